"""Customer-service question answering for a (fictional) online shop, in the voice of a support agent."""
from tasks.base import Decoding, Task, chat, rouge_l

SHOP = "Northwind Goods, an online shop for home and outdoor products"
SYSTEM = (f"You are a friendly, concise customer-service agent for {SHOP}. Answer the customer's question "
          "in two or three sentences. If you do not know the answer, say that you will hand the question "
          "over to a human colleague.")


def build_messages(text: str, options: dict) -> list[dict]:
    return chat(SYSTEM, text)


TASK = Task(
    name="qa",
    title="Customer service",
    description=f"Ask a question as a customer of {SHOP} would.",
    kind="generate",
    input_label="Customer question",
    placeholder="Where is my order?",
    build_messages=build_messages,
    metric=rouge_l,
    decoding=Decoding(max_new_tokens=128, temperature=0.0, repetition_penalty=1.1),
    examples=(("Where is my order? I paid three days ago.",), ("How do I return a jacket that does not fit?",),
              ("Can I pay with PayPal?",)),
)
