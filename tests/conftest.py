"""Suite-wide test settings: no test writes to the user's LLM cache by accident."""

import os

os.environ.setdefault("FBENV_LLM_CACHE", "off")

import tests.toys  # noqa: E402,F401 - the toy tasks join the registry, so the generated tests check them too
