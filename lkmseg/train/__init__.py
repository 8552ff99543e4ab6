"""Training: the loop (``loop``: ``train_run``) over one run's ``trainer``, one ``step``,
``losses``, ``evaluate``, ``runtime`` (device, precision), ``distributed``, ``logs``,
``tracking`` (TensorBoard, results.png), ``terminal`` (progress bar, stop signals),
``convert`` and ``init_weights``.

``lkmseg.train(...)`` calls ``lkmseg.api.train`` (see ``lkmseg._callable``).
"""

from lkmseg._callable import callable_package

callable_package(__name__)
