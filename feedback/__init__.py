"""What users said about answers: the store (SQLAlchemy + migrations + spool), its exports and snapshots."""
