"""The probe set every export is checked on: held-out 2-digit addition problems (the GRPO demo's task, in its
exact prompt wording and the chat template) plus general chat prompts that exercise digits, punctuation,
code, non-ASCII text, whitespace, a system prompt and a second turn."""

from __future__ import annotations

from typing import Any

N_ADDITION = 26

GENERAL: list[list[dict[str, str]]] = [
    [{"role": "user", "content": c}]
    for c in (
        "What is the capital of France?",
        "Write a haiku about the sea.",
        "Explain what a prime number is in one sentence.",
        "List three colors.",
        "Translate 'good morning' into Spanish.",
        "def add(a, b):\n    return",
        "Write a Python function that reverses a string.",
        "What is 7 times 8?",
        "Name a planet in the solar system.",
        "Give me a synonym for 'happy'.",
        "Count from 1 to 10.",
        "What year did the first person walk on the moon?",
        "Summarize: The cat sat on the mat and looked at the dog.",
        "Is 17 a prime number? Answer yes or no.",
        "Héllo wörld! Qu'est-ce que c'est ? 你好",
        "Spell the word 'banana' backwards.",
        "Tell me a fun fact about octopuses.",
        "   leading spaces and\ttabs\n\nand blank lines   ",
        "What is 1000 - 1?",
        "Complete the sequence: 2, 4, 8, 16,",
        "Write a JSON object with keys name and age.",
    )
] + [
    [{"role": "system", "content": "You are a terse assistant."}, {"role": "user", "content": "Hi!"}],
    [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "What is water made of?"}],
    [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3 + 3?"},
    ],
]


def probe_messages() -> list[list[dict[str, str]]]:
    """50 conversations: 26 held-out addition problems (incl. "What is 23 + 45?") + 24 general prompts."""
    from trainer.data import ADDITION_PROMPT, addition_tasks

    # The first eval_size problems of the addition source are its held-out split (trainer.data), so these
    # were never trained on by a model from the GRPO demo.
    held_out = [t.messages for t in addition_tasks(N_ADDITION - 1, seed=0)]
    fixed = [{"role": "user", "content": ADDITION_PROMPT.format(a=23, b=45)}]
    return [fixed, *held_out, *GENERAL]


def probe_texts(tok: Any) -> list[str]:
    """Each probe with the chat template applied and the generation prompt added."""
    return [tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in probe_messages()]


def probe_ids(tok: Any, texts: list[str]) -> list[list[int]]:
    """Token ids as the model's own tokenizer makes them (BOS only if the tokenizer adds one)."""
    return [list(tok(t, add_special_tokens=True).input_ids) for t in texts]
