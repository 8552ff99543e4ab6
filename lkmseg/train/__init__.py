"""Training: the loop, one step, losses, logs, tracking, distributed.

``lkmseg.train(...)`` calls ``lkmseg.api.train`` (see ``lkmseg._callable``).
"""

from lkmseg._callable import callable_package

callable_package(__name__)
