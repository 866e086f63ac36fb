r"""hbflow: exact counter terms and continuous-time models of heavy-ball, Nesterov and gradient descent.

The public surface is re-exported here; implementation modules are private.
"""

import jax as _jax

# Order studies are meaningless in float32; every numerical routine in hbflow works in float64.
_jax.config.update("jax_enable_x64", True)

from ._bseries import Character as Character
from ._bseries import compose as compose
from ._bseries import exact_flow as exact_flow
from ._bseries import exp as exp
from ._bseries import inverse as inverse
from ._bseries import log as log

# --- derivation (counter terms) ---
# --- numerics (methods, models, integration, comparison) ---
from ._methods import iterates as iterates
from ._trees import Tree as Tree
from ._trees import trees_of_order as trees_of_order
from ._trees import trees_up_to as trees_up_to

__version__ = "0.1.0"
