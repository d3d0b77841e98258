"""A one-shot few-shot prompt file for sampling tests: short, so the tiny teacher's prompts stay short."""

PROMPT_FILE = """\
Question: Tom has 3 apples and buys 2 more. How many apples does he have?
Let's think step by step
Tom starts with 3 apples.
He buys 2 more, so 3 + 2 = 5.
The answer is 5
"""
