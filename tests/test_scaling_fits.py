"""Scaling-law fits on known laws: parameters recovered, honest intervals, extrapolation, comparisons,
IsoFLOP optima."""

import doctest

import numpy as np
import pytest

from experiments.scaling_study import compare as cmp
from experiments.scaling_study import fits

C = np.repeat(np.geomspace(1e9, 1e13, 9), 3)  # 9 widths x 3 seeds
c = C / 1e9
FRONTIER = {"e_inf": 0.05, "a": 0.6, "b": 0.4, "d": 2.0}


def frontier(c, e_inf=0.05, a=0.6, b=0.4, d=2.0):
    return e_inf + a * (c + d) ** -b


def noisy(e, seed, sigma=0.03):
    return e * np.exp(np.random.default_rng(seed).normal(0.0, sigma, np.shape(e)))


def test_doctests():
    for module in (fits, cmp):
        assert doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE).failed == 0


def _recovered(form, x, e, truth, check, eps0=None, tol=None):
    r = fits.fit(form, x, e, eps0=eps0)
    boot = fits.bootstrap(form, x, e, n_resamples=100, seed=1, eps0=eps0, fit_result=r)
    assert boot["failed"] == 0 and boot["samples"].shape == (100, len(fits.FORMS[form].params))
    for name in check:
        low, high = boot["params"][name]
        assert low <= truth[name] <= high, (name, low, truth[name], high)
        assert abs(r["params"][name] - truth[name]) < tol[name], (name, r["params"][name])
    return r


def test_power_law_recovered():
    truth = {"a": 0.6, "b": 0.3}
    r = _recovered("power", C, noisy(0.6 * c ** -0.3, 0), truth, ("a", "b"), tol={"a": 0.03, "b": 0.01})
    assert r["c0"] == 1e9 and r["converged_share"] == 1.0 and 0.02 < r["rmse_log"] < 0.04


def test_frontier_law_recovered():
    r = _recovered("frontier", C, noisy(frontier(c), 1), FRONTIER, ("e_inf", "b"),
                   tol={"e_inf": 0.01, "b": 0.06})
    assert set(r["params"]) == {"e_inf", "a", "b", "d"} and abs(r["spearman"]) < 0.5


def test_m4_law_recovered():
    # The law inverted for compute: errors from 0.6 down to 0.07, chance 0.9.
    truth = {"e_inf": 0.04, "alpha": 0.7, "beta": 1.2, "gamma": 0.35}
    e = np.repeat(np.geomspace(0.6, 0.07, 9), 3)
    cm = ((e - truth["e_inf"]) / ((0.9 - e) ** truth["alpha"] * truth["beta"])) ** (-1 / truth["gamma"])
    r = _recovered("m4", cm * 1e9, noisy(e, 2, 0.01), truth, ("e_inf", "alpha", "gamma"), eps0=0.9,
                   tol={"e_inf": 0.01, "alpha": 0.15, "gamma": 0.05})
    assert np.allclose(fits.predict(r, cm * 1e9), e, rtol=0.05)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 2.0])
def test_m4_prediction_solves_the_law(alpha):
    e = np.geomspace(0.85, 0.031, 50)
    law = {"form": "m4", "params": {"e_inf": 0.03, "alpha": alpha, "beta": 0.7, "gamma": 0.4},
           "c0": 1.0, "eps0": 0.9}
    compute = ((e - 0.03) / ((0.9 - e) ** alpha * 0.7)) ** (-1 / 0.4)
    assert np.allclose(fits.predict(law, compute), e, rtol=1e-10, atol=0)


def test_joint_law_recovered():
    truth = {"E": 0.03, "A": 0.5, "alpha": 0.35, "B": 0.4, "beta": 0.28}
    n, d = (v.ravel() for v in np.meshgrid(np.geomspace(1, 1e3, 6), np.geomspace(1, 1e3, 6)))
    e = noisy(0.03 + 0.5 * n ** -0.35 + 0.4 * d ** -0.28, 3, 0.02)
    r = _recovered("joint", (n * 1e6, d * 1e7), e, truth, ("alpha", "beta"), tol={"alpha": 0.08, "beta": 0.08})
    assert (r["n0"], r["d0"]) == (1e6, 1e7)
    assert fits.predict(r, (np.array([2e6]), np.array([3e7]))).shape == (1,)


def test_kaplan_law_recovered_and_its_jacobian_is_exact():
    truth = {"E": 0.05, "A": 0.2, "alpha": 0.6, "B": 0.3, "beta": 0.5}
    n, d = (v.ravel() for v in np.meshgrid(np.geomspace(1, 1e3, 6), np.geomspace(1, 1e3, 6)))
    law = lambda n, d: 0.05 + (0.2 * n ** -0.6 + 0.3 / d) ** 0.5  # errors 0.76 -> 0.11
    r = _recovered("kaplan", (n * 1e6, d * 1e7), noisy(law(n, d), 9, 0.01), truth, ("alpha", "beta"),
                   tol={"alpha": 0.08, "beta": 0.05})
    assert np.allclose(fits.predict(r, (np.array([2e6]), np.array([3e7]))), law(2, 3), rtol=0.05)
    spec = fits.FORMS["kaplan"]
    data = fits._data("kaplan", (n * 1e6, d * 1e7), law(n, d), None, (1e6, 1e7))
    th = spec.internal(np.array([truth[k] for k in spec.params]))
    lp, jac = spec.logpred(th, data)
    assert np.allclose(np.exp(lp), law(n, d), rtol=1e-12)
    for j in range(len(th)):
        step = np.zeros_like(th)
        step[j] = 1e-6
        numeric = (spec.logpred(th + step, data)[0] - spec.logpred(th - step, data)[0]) / 2e-6
        assert np.allclose(jac[:, j], numeric, rtol=1e-5, atol=1e-8), spec.params[j]


@pytest.mark.slow  # hundreds of fits
def test_frontier_exponent_intervals_cover_the_truth_80_percent_of_the_time():
    # 8 widths x 3 seeds, 3% noise. Over 200 draws these 10-90% intervals covered b 82% of the
    # time (25-75% intervals: about 50%, which this test would reject).
    widths = np.repeat(np.geomspace(1e9, 1e13, 8), 3)
    covered = []
    for draw in range(30):
        e = noisy(frontier(widths / 1e9, d=0.0), 1000 + draw)
        r = fits.fit("frontier", widths, e, starts=8)
        low, high = fits.bootstrap("frontier", widths, e, n_resamples=100, seed=draw, fit_result=r)["params"]["b"]
        covered.append(low <= FRONTIER["b"] <= high)
    assert 0.7 <= np.mean(covered) <= 0.9, np.mean(covered)


def test_bootstrap_is_deterministic_and_groups_resample_whole_runs():
    e = noisy(0.6 * c ** -0.3, 4)
    one = fits.bootstrap("power", C, e, n_resamples=50, seed=7)
    assert np.array_equal(one["samples"], fits.bootstrap("power", C, e, n_resamples=50, seed=7)["samples"])
    alone = fits.bootstrap("power", C, e, groups=np.arange(C.size), n_resamples=50, seed=7)
    assert np.array_equal(one["samples"], alone["samples"])
    # One group: every resample is the whole sample, so every refit is the full fit.
    whole = fits.bootstrap("power", C, e, groups=np.zeros(C.size, int), n_resamples=10, seed=7)
    assert np.allclose(whole["samples"], [[one["fit"]["params"]["a"], one["fit"]["params"]["b"]]], rtol=1e-6)
    # Two widths, grouped by width: half the resamples hold one width, too few for 2 parameters.
    two = fits.bootstrap("power", C[:6], e[:6], groups=C[:6], n_resamples=40, seed=7)
    assert 10 < two["failed"] < 30 and len(two["samples"]) == 40 - two["failed"]
    bnd = fits.band("power", one, one["fit"], [1e9, 1e14])
    assert np.all(bnd["low"] <= bnd["fit"]) and np.all(bnd["fit"] <= bnd["high"])
    assert bnd["high"][1] / bnd["low"][1] > bnd["high"][0] / bnd["low"][0]  # wider far away


def test_bootstrap_of_seeds_widens_the_interval_by_their_spread():
    e = frontier(c[::3])  # 9 points on the law, each the mean of 3 seeds
    x = C[::3]
    alone = fits.bootstrap("frontier", x, e, n_resamples=40, seed=3)
    # Runs that agree (or one run a point) leave every resample as it was.
    for runs in ([[v] for v in e], [[v, v, v] for v in e]):
        same = fits.bootstrap("frontier", x, e, runs=runs, n_resamples=40, seed=3)
        assert np.array_equal(same["samples"], alone["samples"])
    # Seeds spread ±20% about each point: the resampled means move, and b's interval widens.
    spread = [v * np.array([0.8, 1.0, 1.2]) for v in e]
    wide = fits.bootstrap("frontier", x, e, runs=spread, n_resamples=40, seed=3)
    width = {k: np.subtract(*b["params"]["b"][::-1]) for k, b in (("alone", alone), ("wide", wide))}
    assert width["wide"] > 10 * width["alone"] + 0.01, width
    assert np.array_equal(wide["samples"], fits.bootstrap("frontier", x, e, runs=spread, n_resamples=40,
                                                          seed=3)["samples"])


def test_frontier_bootstrap_fits_only_each_resamples_frontier():
    x, e = C[::3], noisy(frontier(c[::3]), 11, sigma=0.01)
    # Beside each frontier point, runs that no compute saves: twice the error at the same compute.
    xs, es = np.concatenate([x, x]), np.concatenate([e, 2 * e])
    assert fits.pareto(np.stack([xs, es], 1)) == [True] * x.size + [False] * x.size
    front = fits.bootstrap("frontier", xs, es, frontier=True, n_resamples=60, seed=5)
    assert front["fit"]["n"] == x.size and abs(front["fit"]["params"]["b"] - 0.4) < 0.05
    low, high = front["params"]["b"]
    assert low <= 0.4 <= high and high - low < 0.2, (low, high)
    # Fitting every point instead finds a different law.
    every = fits.fit("frontier", xs, es)
    assert every["rmse_log"] > 0.2


def _seeded(e, sigma, k=3):
    """k runs per point whose mean is e and whose log errors have sample deviation sigma."""
    z = np.linspace(-1, 1, k) * np.sqrt((k - 1) / np.sum(np.linspace(-1, 1, k) ** 2))
    return [v * np.exp(sigma * z) / np.exp(sigma * z).mean() for v in e]


def test_reruns_spread_with_the_seeds_and_pool_them_per_stratum():
    x, e = C[::3], frontier(c[::3])
    strata = np.repeat([100, 200, 400], 3)
    quiet = cmp.reruns("frontier", x, _seeded(e, 1e-4), strata, n_resamples=40, starts=8)
    loud = cmp.reruns("frontier", x, _seeded(e, 0.05), strata, n_resamples=40, starts=8)
    assert set(loud["sigma"]) == {100.0, 200.0, 400.0} and np.allclose(list(loud["sigma"].values()), 0.05)
    low, median, high = quiet["params"]["b"]
    assert abs(median - 0.4) < 1e-3 and high - low < 1e-2
    low, median, high = loud["params"]["b"]
    assert high - low > 0.05 and low < 0.4 < high, (low, median, high)
    # A stratum whose points ran once takes the nearest stratum's spread.
    runs = _seeded(e, 0.05)[:6] + [[v] for v in e[6:]]
    assert cmp.reruns("frontier", x, runs, strata, n_resamples=2, starts=8)["sigma"][400.0] == pytest.approx(0.05)
    assert "skipped" in cmp.reruns("frontier", x, [[v] for v in e], strata, n_resamples=2)


def test_extrapolation_of_a_true_power_law_is_tight():
    out = cmp.extrapolation("power", C, noisy(0.6 * c ** -0.3, 5, 0.01), n_resamples=100)
    assert (out["n_fit"], out["n_held_out"]) == (21, 6)
    assert out["median_abs_log"] < 0.02 and out["max_abs_log"] < 0.05
    assert out["inside_prediction_band"] >= 0.5 and np.all(out["low"] <= out["high"])


def test_extrapolation_past_an_unseen_floor_fails():
    e = noisy(0.6 * c ** -0.3, 5, 0.01)
    e = np.where(c > 2500, 0.07, e)  # the fit part (c ≤ 2500) never sees the floor
    out = cmp.extrapolation("power", C, e, n_resamples=100)
    assert out["median_abs_log"] > 0.2 and out["inside_band"] == out["inside_prediction_band"] == 0.0
    assert np.all(out["predicted"] < out["observed"])


def test_extrapolation_skips_when_too_few_points_to_fit():
    out = cmp.extrapolation("frontier", C, frontier(c), fraction=1e-3)  # 3 widths, 4 parameters
    assert "skipped" in out and (out["n_fit"], out["n_held_out"]) == (9, 18)


def test_joint_extrapolation_needs_compute():
    n, d = np.geomspace(1, 100, 8), np.geomspace(1, 100, 8)
    with pytest.raises(ValueError, match="compute"):
        cmp.extrapolation("joint", (n, d), 0.05 + 0.3 * n ** -0.3)


def test_paired_comparison_of_exponents():
    pairs = [(i, i) for i in range(C.size)]
    steep, shallow = noisy(frontier(c, b=0.55), 6), noisy(frontier(c, b=0.3), 7)
    out = cmp.compare("frontier", "b", C, steep, C, shallow, pairs=pairs, n_resamples=200, starts=8,
                      names=("wide", "thin"))
    assert out["verdict"] == "wide scales better" and out["p_a_better"] >= 0.95 and out["difference"] > 0.1
    same = cmp.compare("frontier", "b", C, noisy(frontier(c), 8), C, noisy(frontier(c), 9), pairs=pairs,
                       n_resamples=200, starts=8)
    assert same["verdict"] == "not distinguishable" and 0.05 < same["p_a_better"] < 0.95
    # A parameter where lower is better: the steeper power law's exponent, read as a cost.
    steep, shallow = noisy(0.6 * c ** -0.5, 6), noisy(0.6 * c ** -0.3, 7)
    low = cmp.compare("power", "b", C, steep, C, shallow, pairs=pairs, n_resamples=100, higher_is_better=False)
    assert low["verdict"] == "b scales better" and low["p_a_better"] <= 0.05


def test_isoflop_recovers_the_optimal_size_trend():
    E, A, alpha, B, beta = 0.02, 5.0, 0.34, 5.0, 0.28
    budgets = 1e15 * 4.0 ** np.arange(5)
    n_opt = (alpha * A / (beta * B)) ** (1 / (alpha + beta)) * (budgets / 6) ** (beta / (alpha + beta))
    comp = np.repeat(budgets, 7)

    def profiles(factors):  # 7 sizes per budget, N_opt times the factors; D = C / (6 N)
        size = (n_opt[:, None] * factors).ravel()
        return comp, size, E + A / size ** alpha + B / (comp / (6 * size)) ** beta

    out = cmp.isoflop(*profiles(2.0 ** np.arange(-3, 4)))
    assert len(out["bins"]) == 5 and out["n_bins_used"] == 5
    assert abs(out["slope"] - beta / (alpha + beta)) < 0.01 and out["slope_se"] < 0.01
    ratio = np.array([r["n_opt"] for r in out["bins"]]) / n_opt
    assert np.all(np.abs(np.log(ratio)) < 0.2)
    # Sizes all below the optimum: the vertex lies outside and is flagged.
    small = cmp.isoflop(*profiles(2.0 ** np.arange(-9, -2)))
    assert all(r["at_edge"] for r in small["bins"]) and small["slope"] is None


def test_converged_share():
    easy = fits.fit("frontier", C, frontier(c))
    assert easy["converged_share"] > 0.9 and easy["objective"] < 1e-8
    assert abs(easy["params"]["b"] - 0.4) < 1e-3
    r = fits.fit("frontier", C, noisy(frontier(c), 10), starts=20)
    assert 0 < r["converged_share"] <= 1


@pytest.mark.parametrize("call, arg", [
    (lambda: fits.fit("power", C, np.full(C.size, 1.2)), "e"),
    (lambda: fits.fit("power", C[:-1], np.full(C.size, 0.3)), "x"),
    (lambda: fits.fit("frontier", C[:3], np.full(3, 0.3)), "e"),
    (lambda: fits.fit("cubic", C, np.full(C.size, 0.3)), "form"),
    (lambda: fits.fit("m4", C, np.full(C.size, 0.3)), "eps0"),
    (lambda: fits.fit("m4", C, np.full(C.size, 0.3), eps0=0.2), "eps0"),
    (lambda: fits.fit("joint", C, np.full(C.size, 0.3)), "x"),
    (lambda: fits.fit("power", -C, np.full(C.size, 0.3)), "x"),
    (lambda: fits.fit("power", C, np.full(C.size, 0.3), starts=np.ones((3, 3))), "starts"),
    (lambda: fits.bootstrap("power", C, np.full(C.size, 0.3), groups=[0, 1]), "groups"),
    (lambda: fits.bootstrap("power", C, np.full(C.size, 0.3), runs=[[0.3]]), "runs"),
    (lambda: fits.bootstrap("power", C, np.full(C.size, 0.3), runs=[[0.3, 0.5]] * C.size), "runs"),
    (lambda: fits.bootstrap("joint", (C, C), np.full(C.size, 0.3), frontier=True), "frontier"),
    (lambda: cmp.reruns("power", C, [[]] * C.size, C), "runs"),
    (lambda: cmp.reruns("power", C, [[0.3, 0.3]] * C.size, C[:-1]), "strata"),
    (lambda: cmp.reruns("joint", (C, C), [[0.3, 0.3]] * C.size, C), "form"),
    (lambda: cmp.isoflop(C, C[:-1], np.full(C.size, 0.3)), "size"),
    (lambda: cmp.compare("power", "b", C, np.full(C.size, 0.3), C, np.full(C.size, 0.3), pairs=[(0, 99)]),
     "pairs"),
    (lambda: cmp.compare("power", "e_inf", C, np.full(C.size, 0.3), C, np.full(C.size, 0.3), pairs=[(0, 0)]),
     "param"),
])
def test_bad_inputs_name_the_argument(call, arg):
    with pytest.raises(ValueError, match=rf"^{arg}\b"):
        call()
