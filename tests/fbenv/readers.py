"""A faithful reader of belief questions, for tests of decomposed roles and `fbenv fidelity`."""

from __future__ import annotations

import numpy as np

from fbenv.llm.base import Backend, ChatResult


class Reader(Backend):
    """A faithful reader of belief questions: picks the statement the text bears out.

    Two-statement requests ("The X has Y." / "The X does not have Y.") get the negation
    when the text says it, the claim when the text says that, and an even split otherwise
    (the content-free prompt included). A request among several "... has X." statements gets
    the one whose "has X" the text states (the person's own sentence, as a model copies it),
    an even split when none or several are stated; any other choice request gets its first choice.
    """

    spec = model = "reader"
    scores_choices = True

    def __init__(self):
        self.batches: list[int] = []

    def _generate(self, requests):
        self.batches.append(len(requests))
        out = []
        for req in requests:
            choices = req.sampling.choices
            text = req.messages[-1].content.split("\n\n")
            context = " ".join(text[:-1]).lower()
            probs = np.full(len(choices), 1.0 / max(len(choices), 1))
            if len(choices) == 2 and "does not have" in choices[1]:
                feature = choices[0].lower().rstrip(".").split(" has ", 1)[1]
                claim, negation = f"has {feature}", f"does not have {feature}"
                if negation in context:
                    probs = np.array([0.1, 0.9])
                elif claim in context:
                    probs = np.array([0.9, 0.1])
            elif choices and all(" has " in c for c in choices):
                stated = [float("has " + c.lower().rstrip(".").split(" has ", 1)[1] in context) for c in choices]
                if sum(stated) == 1:  # else (the content-free prompt too) an even split
                    probs = np.array([0.9 if x else 0.1 for x in stated])
                    probs /= probs.sum()
            elif choices:
                probs = np.array([1.0] + [1e-6] * (len(choices) - 1))
                probs /= probs.sum()
            pick = int(np.argmax(probs)) if choices else 0
            out.append(ChatResult(choices[pick] if choices else "It went fine.",
                                  choice_logprobs=tuple(np.log(probs)) if choices else None))
        return out


def read_critic_question(choices, text: str):
    """How a faithful reader answers the problem bank's critic (``fbenv.envs.problems``):
    which final answer or step the solver's text states (the option it says), and whether a
    note meets a checklist requirement. Choice probabilities, uniform for the content-free
    prompt; None when ``text`` is no critic question."""
    import re

    n = len(choices)
    if text.startswith("N/A\n\n"):
        return np.full(n, 1.0 / n)
    if text.startswith("Feedback: ") or "\n\nFeedback: " in text:  # a solver reading its feedback
        feedback = " ".join(text.split("Feedback: ", 1)[1].rsplit("\n\n", 1)[0].split())
        stated = [float(" ".join(c.split()).rstrip(".") in feedback) for c in choices]
        if sum(stated) >= 1:
            longest = max((len(c) for c, x in zip(choices, stated) if x))
            probs = np.array([0.9 if x and len(c) == longest else 0.1 for c, x in zip(choices, stated)])
            return probs / probs.sum()
        return np.full(n, 1.0 / n)
    said = re.search(r"^Solver's answer:\n(?:.*\n)*?Answer: *(.*)$|^Solver's step \d: (.*)$", text, re.M)
    if said and text.startswith("Solver's"):
        value = (said.group(1) or said.group(2) or "").strip()
        values = [re.sub(r"^The solver's (?:final answer is|step \d says) ", "", c)[:-1] for c in choices]
        probs = np.array([0.9 if v == value else 0.1 for v in values])
        return probs / probs.sum()
    if text.startswith("Text:\n") and n == 2:
        body, claim = text[len("Text:\n"):].rsplit("\n\n", 1)[0], choices[0]
        lines = body.strip().splitlines()
        rest = "\n".join(lines[1:] if lines and lines[0].startswith("## ") else lines)
        holds = None
        if m := re.match(r"The text mentions (\w+) and (\w+)\.", claim):
            holds = all(re.search(rf"\b{w}\b", rest) for w in m.groups())
        elif m := re.match(r"The text starts with the header '(.*)'\.", claim):
            holds = bool(lines) and lines[0].strip() == m.group(1)
        elif m := re.match(r"The text gives the number (\d+)\.", claim):
            holds = re.search(rf"(?<!\d){m.group(1)}(?!\d)", rest) is not None
        return np.array([0.5, 0.5]) if holds is None else np.array([0.9, 0.1] if holds else [0.1, 0.9])
    return None
