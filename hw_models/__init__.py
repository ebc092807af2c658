"""Hardware models: fixed-point formats, crossbar tiles, periphery, noise models, presets.

Importing it sets OMP_WAIT_POLICY=PASSIVE unless already set (common/threads.py)."""

from common.threads import passive_threads

passive_threads()
