r"""Stochastic heavy ball: finite-sum problems, mini-batch iterates, stochastic modified
equations, an exact moment oracle for least squares, and a weak-error comparator."""

from ._compare import (
    BUILTIN_PHIS as BUILTIN_PHIS,
    MC_MARGIN as MC_MARGIN,
    WeakModelErrors as WeakModelErrors,
    WeakOrderStudy as WeakOrderStudy,
    compare_weak as compare_weak,
)
from ._iterates import (
    METHOD_COEFFICIENTS as METHOD_COEFFICIENTS,
    MethodCoefficients as MethodCoefficients,
    stochastic_iterates as stochastic_iterates,
)
from ._oracle import (
    ExactMoments as ExactMoments,
    iterate_moments_exact as iterate_moments_exact,
    sde_moments_exact as sde_moments_exact,
)
from ._problems import (
    FiniteSumProblem as FiniteSumProblem,
    diagonal_linear_network_sgd as diagonal_linear_network_sgd,
    get_stochastic_problem as get_stochastic_problem,
    least_squares_problem as least_squares_problem,
    logistic_regression_problem as logistic_regression_problem,
    stochastic_problem_names as stochastic_problem_names,
)
from ._sde import (
    StochasticModifiedEquation as StochasticModifiedEquation,
    sde_model_from_name as sde_model_from_name,
)
