"""A toy single-agent task on the kit (the README's worked example): name the shopper's colour.

A shopper secretly likes one of four colours; the agent names one; a simulated rater
rates it. The rule rater is honest; the rating is the feedback, liking is the truth.
"""

from __future__ import annotations

import numpy as np

from fbenv.env import FeedbackEnv
from fbenv.llm.base import Message
from fbenv.roles import Rating
from fbenv.truth import StepResult, Truth

COLOURS = ("red", "green", "blue", "yellow")


class Rater(Rating):
    key, name = "rater", "Guess rating"

    def rule(self, ctx):  # 5 for the liked colour, 1 otherwise
        env, colour = ctx
        return 5.0 if colour == COLOURS[env.task] else 1.0

    def messages(self, ctx):
        env, colour = ctx
        return [Message("system", f"You love {COLOURS[env.task]} things."),
                Message("user", f"The shop offers you something {colour}. How much do you like it?")]


class GuessEnv(FeedbackEnv):
    roles = (Rater(),)
    names = {"shopper": "Shopper", "assistant": "Assistant"}
    n_actions, n_features = len(COLOURS), 1

    def new_task(self, rng):
        return int(rng.integers(len(COLOURS)))  # the liked colour, hidden

    def opening(self):
        self.transcript.say("shopper", "Which colour should I buy?")

    def respond(self, text):
        named = [c for c in COLOURS if c in text.lower()]
        if len(named) != 1:  # not an answer: the shopper asks again
            self.transcript.say("shopper", "Please name one colour.")
            return StepResult(truncated=self.turn >= 3)
        rating = self.sim.ask(self.roles[0], (self, named[0])).feedback
        liked = named[0] == COLOURS[self.task]
        return StepResult(rating.normalized(), terminated=True, truth=Truth(float(liked), best=1.0))

    def candidate_replies(self):
        return [f"Buy the {c} one." for c in COLOURS]

    def features(self):
        return np.array([min(self.turn / 3, 1.0)], dtype=np.float32)
