"""What tests share: helpers, stand-ins and harnesses that more than one test module (or a
benchmark) imports. Fixtures stay in the conftest.py files; the helpers they are built on
live here.

Asserts in these modules are rewritten by pytest as a test module's are (tests/__init__.py
registers the package before anything imports it), so a helper's failing assert explains
itself the same way."""
