"""Suite-wide test settings: no test writes to the user's LLM cache by accident."""

import os

os.environ.setdefault("FBENV_LLM_CACHE", "off")
