r"""hbflow: exact counter terms and continuous models of heavy ball, Nesterov and gradient descent.

The public surface is re-exported here; implementation modules are private.  Names are loaded
on first use, so that the exact side (``hbflow derive``, `counter_terms`, the B-series algebra)
runs without importing JAX, diffrax or equinox.
"""

import importlib as _importlib
import os as _os
import sys as _sys
from typing import TYPE_CHECKING

__version__ = "0.1.0"


def _enable_float64() -> None:
    # Deliberately global: the arrays hbflow returns must stay float64 in the caller's own JAX
    # code (a scoped switch would hand back float64 arrays that the next jnp operation outside
    # it turns into float32).  When JAX is not imported yet, its own start-up switch is set, so
    # JAX starts in float64 whether the caller or hbflow imports it first; importing hbflow
    # stays free of JAX.  Every numerical entry point still refuses to run if float64 is
    # switched off later (`_validate.require_float64`).
    jax = _sys.modules.get("jax")
    if jax is not None and hasattr(jax, "config"):
        jax.config.update("jax_enable_x64", True)
    else:
        _os.environ["JAX_ENABLE_X64"] = "1"


_enable_float64()

#: Public name -> the private module that defines it.
_EXPORTS = {
    # B-series
    "Character": "_bseries",
    "compose": "_bseries",
    "exact_flow": "_bseries",
    "exp": "_bseries",
    "inverse": "_bseries",
    "log": "_bseries",
    # derivation (counter terms)
    "CONVENTION": "_counter_terms",
    "CounterTerms": "_counter_terms",
    "counter_terms": "_counter_terms",
    "METHODS": "_derive",
    "RationalFunction": "_derive",
    "coefficients_at": "_derive",
    "coefficients_up_to": "_derive",
    "field_latex": "_format",
    "field_text": "_format",
    "ShiftedStart": "_shift",
    "shifted_start": "_shift",
    "Tree": "_trees",
    "trees_of_order": "_trees",
    "trees_up_to": "_trees",
    # numerics (methods, models, integration, comparison)
    "ModelErrors": "_compare",
    "OrderStudy": "_compare",
    "OrderStudyError": "_compare",
    "Progress": "_compare",
    "RunFailure": "_compare",
    "compare": "_compare",
    "estimate_work": "_compare",
    "WorkEstimate": "_compare",
    "WORK_LIMITS": "_compare",
    "fit_order": "_compare",
    "elementary_differentials": "_differentials",
    "ModelSolution": "_integrate",
    "SolveError": "_integrate",
    "solve_model": "_integrate",
    "DivergenceError": "_methods",
    "iterates": "_methods",
    "stability_limit": "_methods",
    "AbstractContinuousModel": "_models",
    "AbstractFirstOrderModel": "_models",
    "GradientFlow": "_models",
    "HeavyBallFlow": "_models",
    "KovachkiStuartODE": "_models",
    "MomentumGradientFlow": "_models",
    "RescaledGradientFlow": "_models",
    "ShiftedSteadyStateFlow": "_models",
    "SteadyStateFlow": "_models",
    "model_from_name": "_models",
    "model_color": "_plot",
    "plot_order_study": "_plot",
    "DEFAULT_PROBLEM": "_problems",
    "Problem": "_problems",
    "deep_linear_network": "_problems",
    "diagonal_linear_network": "_problems",
    "get_problem": "_problems",
    "problem_names": "_problems",
    # sweeps
    "enable_compilation_cache": "_jax_cache",
    "SweepPoint": "_sweep",
    "SweepProgress": "_sweep",
    "SweepResult": "_sweep",
    "load_sweep_results": "_sweep",
    "sweep": "_sweep",
    # stochastic
    "BUILTIN_PHIS": "_stochastic",
    "ExactMoments": "_stochastic",
    "FiniteSumProblem": "_stochastic",
    "MethodCoefficients": "_stochastic",
    "StochasticModifiedEquation": "_stochastic",
    "WeakModelErrors": "_stochastic",
    "WeakOrderStudy": "_stochastic",
    "compare_weak": "_stochastic",
    "diagonal_linear_network_sgd": "_stochastic",
    "get_stochastic_problem": "_stochastic",
    "iterate_moments_exact": "_stochastic",
    "least_squares_problem": "_stochastic",
    "logistic_regression_problem": "_stochastic",
    "sde_model_from_name": "_stochastic",
    "sde_moments_exact": "_stochastic",
    "stochastic_iterates": "_stochastic",
    "stochastic_problem_names": "_stochastic",
}

# Built from the table at run time; type checkers take the names from the block at the end.
__all__ = ["__version__", *_EXPORTS]  # pyright: ignore[reportUnsupportedDunderAll]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hbflow' has no attribute {name!r}")
    value = getattr(_importlib.import_module(f"hbflow.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from ._bseries import Character as Character
    from ._bseries import compose as compose
    from ._bseries import exact_flow as exact_flow
    from ._bseries import exp as exp
    from ._bseries import inverse as inverse
    from ._bseries import log as log
    from ._counter_terms import CONVENTION as CONVENTION
    from ._counter_terms import CounterTerms as CounterTerms
    from ._counter_terms import counter_terms as counter_terms
    from ._derive import METHODS as METHODS
    from ._derive import RationalFunction as RationalFunction
    from ._derive import coefficients_at as coefficients_at
    from ._derive import coefficients_up_to as coefficients_up_to
    from ._format import field_latex as field_latex
    from ._format import field_text as field_text
    from ._shift import ShiftedStart as ShiftedStart
    from ._shift import shifted_start as shifted_start
    from ._trees import Tree as Tree
    from ._trees import trees_of_order as trees_of_order
    from ._trees import trees_up_to as trees_up_to
    from ._compare import ModelErrors as ModelErrors
    from ._compare import OrderStudy as OrderStudy
    from ._compare import OrderStudyError as OrderStudyError
    from ._compare import Progress as Progress
    from ._compare import RunFailure as RunFailure
    from ._compare import compare as compare
    from ._compare import estimate_work as estimate_work
    from ._compare import WorkEstimate as WorkEstimate
    from ._compare import WORK_LIMITS as WORK_LIMITS
    from ._compare import fit_order as fit_order
    from ._differentials import elementary_differentials as elementary_differentials
    from ._integrate import ModelSolution as ModelSolution
    from ._integrate import SolveError as SolveError
    from ._integrate import solve_model as solve_model
    from ._methods import DivergenceError as DivergenceError
    from ._methods import iterates as iterates
    from ._methods import stability_limit as stability_limit
    from ._models import AbstractContinuousModel as AbstractContinuousModel
    from ._models import AbstractFirstOrderModel as AbstractFirstOrderModel
    from ._models import GradientFlow as GradientFlow
    from ._models import HeavyBallFlow as HeavyBallFlow
    from ._models import KovachkiStuartODE as KovachkiStuartODE
    from ._models import MomentumGradientFlow as MomentumGradientFlow
    from ._models import RescaledGradientFlow as RescaledGradientFlow
    from ._models import ShiftedSteadyStateFlow as ShiftedSteadyStateFlow
    from ._models import SteadyStateFlow as SteadyStateFlow
    from ._models import model_from_name as model_from_name
    from ._plot import model_color as model_color
    from ._plot import plot_order_study as plot_order_study
    from ._problems import DEFAULT_PROBLEM as DEFAULT_PROBLEM
    from ._problems import Problem as Problem
    from ._problems import deep_linear_network as deep_linear_network
    from ._problems import diagonal_linear_network as diagonal_linear_network
    from ._problems import get_problem as get_problem
    from ._problems import problem_names as problem_names
    from ._jax_cache import enable_compilation_cache as enable_compilation_cache
    from ._sweep import SweepPoint as SweepPoint
    from ._sweep import SweepProgress as SweepProgress
    from ._sweep import SweepResult as SweepResult
    from ._sweep import load_sweep_results as load_sweep_results
    from ._sweep import sweep as sweep
    from ._stochastic import BUILTIN_PHIS as BUILTIN_PHIS
    from ._stochastic import ExactMoments as ExactMoments
    from ._stochastic import FiniteSumProblem as FiniteSumProblem
    from ._stochastic import MethodCoefficients as MethodCoefficients
    from ._stochastic import StochasticModifiedEquation as StochasticModifiedEquation
    from ._stochastic import WeakModelErrors as WeakModelErrors
    from ._stochastic import WeakOrderStudy as WeakOrderStudy
    from ._stochastic import compare_weak as compare_weak
    from ._stochastic import diagonal_linear_network_sgd as diagonal_linear_network_sgd
    from ._stochastic import get_stochastic_problem as get_stochastic_problem
    from ._stochastic import iterate_moments_exact as iterate_moments_exact
    from ._stochastic import least_squares_problem as least_squares_problem
    from ._stochastic import logistic_regression_problem as logistic_regression_problem
    from ._stochastic import sde_model_from_name as sde_model_from_name
    from ._stochastic import sde_moments_exact as sde_moments_exact
    from ._stochastic import stochastic_iterates as stochastic_iterates
    from ._stochastic import stochastic_problem_names as stochastic_problem_names
