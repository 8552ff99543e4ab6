"""Benchmarks, reports and the compare study.

``lkmseg.bench(...)`` calls ``lkmseg.api.bench`` (see ``lkmseg._callable``).
"""

from lkmseg._callable import callable_package

callable_package(__name__)
