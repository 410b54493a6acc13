"""The engine layer (placeholder facade while restructuring)."""

from dbselect.engines.cache import (  # noqa: F401
    ENGINE,
    DatabaseUnavailable,
    Engine,
    adopt_configured_aliases,
    alias_for_path,
    apply_remote_disposals,
    connection_options,
    create_file,
    dispose,
    register,
    validate_and_register,
)
from dbselect.engines.cache import engines as all  # noqa: F401
from dbselect.engines.cache import get_engine as get  # noqa: F401
from dbselect.engines.cache import open_engine as open  # noqa: F401
