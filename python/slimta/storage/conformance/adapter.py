"""Run the Python reference adapter: ``python -m slimta.storage.conformance.adapter``.

It serves the adapter protocol of conformance/README.md over the Python
engines: requests on stdin, replies on stdout, logs on stderr.
``--factory MODULE:CALLABLE`` serves the engines that the callable
creates instead, such as deliberately broken ones in tests.
"""

import sys

from ._adapter import main

if __name__ == "__main__":
    sys.exit(main())
