"""Logging setup for the command-line entry points: INFO for our code, quiet for chatty libraries."""
import logging


class _DropRootInfo(logging.Filter):
    # onnxruntime's quantizer logs one INFO line per tensor on the root logger
    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != "root" or record.levelno >= logging.WARNING


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropRootInfo())
    for noisy in ("httpx", "urllib3", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
