import pytest

# Before tests.support is first imported (by a conftest.py): its asserts are rewritten as a
# test module's are. Outside a pytest run (tests/soak.py, bench/) this does nothing.
pytest.register_assert_rewrite("tests.support")
