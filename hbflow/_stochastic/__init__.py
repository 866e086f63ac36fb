r"""Stochastic heavy ball: finite-sum problems, mini-batch iterates, stochastic modified
equations, an exact moment oracle for least squares, and a weak-error comparator."""

from ._compare import BUILTIN_PHIS as BUILTIN_PHIS
from ._compare import MC_MARGIN as MC_MARGIN
from ._compare import WeakModelErrors as WeakModelErrors
from ._compare import WeakOrderStudy as WeakOrderStudy
from ._compare import compare_weak as compare_weak
from ._iterates import METHOD_COEFFICIENTS as METHOD_COEFFICIENTS
from ._iterates import MethodCoefficients as MethodCoefficients
from ._iterates import stochastic_iterates as stochastic_iterates
from ._oracle import ExactMoments as ExactMoments
from ._oracle import iterate_moments_exact as iterate_moments_exact
from ._oracle import sde_moments_exact as sde_moments_exact
from ._problems import FiniteSumProblem as FiniteSumProblem
from ._problems import diagonal_linear_network_sgd as diagonal_linear_network_sgd
from ._problems import get_stochastic_problem as get_stochastic_problem
from ._problems import least_squares_problem as least_squares_problem
from ._problems import logistic_regression_problem as logistic_regression_problem
from ._problems import stochastic_problem_names as stochastic_problem_names
from ._sde import StochasticModifiedEquation as StochasticModifiedEquation
from ._sde import sde_model_from_name as sde_model_from_name
