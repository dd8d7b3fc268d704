"""Toy tasks on the kit, registered for the tests only (the README's worked examples)."""

from fbenv.registry import TaskSpec, register

GUESS = register(TaskSpec(id="toy/Guess-v0", entry_point="tests.toys.guess:GuessEnv",
                          summary="Name the colour a simulated shopper likes; a rater rates it."))
HINT = register(TaskSpec(id="toy/Hint-v0", entry_point="tests.toys.hint:HintEnv", multi_agent=True,
                         summary="A guesser and a hinter; either seat learnable, the other simulated."))
