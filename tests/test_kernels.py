"""The compiled recursions: forward against per-sample float64 loops, exact adjoints, CUDA kernels' logic."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from numba import njit

from drl.fft import records_gradient
from processors import kernels
from processors.kernels import blocked, dispatch, limiter

ROOT = Path(__file__).resolve().parents[1]


def smooth_reference(r, a_att, a_rel):
    s, prev = np.empty(len(r)), 0.0
    for n, rn in enumerate(r):
        a = a_att if rn > prev else a_rel
        prev = a * prev + (1 - a) * rn
        s[n] = prev
    return s


def limiter_reference(g_req, window, alpha):
    """Straight from the definition: padded running minimum, moving average, release recursion."""
    size = len(g_req)
    padded = np.concatenate([np.ones(window - 1), g_req, np.ones(window - 1)])
    minimum = np.array([padded[k : k + window].min() for k in range(size + window - 1)])  # k - (window-1)
    g, prev = np.empty(size), 1.0
    for n in range(size):
        avg = minimum[n : n + window].mean()
        prev = min(avg, prev + (1 - alpha) * (1 - prev))
        g[n] = prev
    return g


def test_smooth_matches_reference_loop():
    rng = np.random.default_rng(1)
    r = rng.random((3, 500)) * rng.random((3, 500)) * 20
    a_att, a_rel = np.array([0.5, 0.9, 0.99]), np.array([0.99, 0.995, 0.6])
    out = kernels.smooth(torch.tensor(r), torch.tensor(a_att), torch.tensor(a_rel)).numpy()
    for i in range(3):
        np.testing.assert_allclose(out[i], smooth_reference(r[i], a_att[i], a_rel[i]), rtol=0, atol=1e-12)


def test_smooth_float32_accumulates_in_float64():
    r = torch.rand(2, 20000) * 10
    a = torch.tensor([0.999, 0.9999])
    s32 = kernels.one_pole(r, a)
    s64 = kernels.one_pole(r.double(), a.double())
    assert s32.dtype == torch.float32
    assert torch.allclose(s32.double(), s64, rtol=1e-6, atol=1e-6)


def test_limiter_gain_matches_reference_and_stays_below_requirement():
    rng = np.random.default_rng(2)
    g_req = np.minimum(1.0, 0.7 / np.abs(rng.standard_normal((2, 400)) * 0.6 + 1e-9))
    window, alpha = np.array([1, 13]), np.array([0.9, 0.99])
    out = kernels.limiter_gain(torch.tensor(g_req), torch.tensor(window), torch.tensor(alpha)).numpy()
    for i in range(2):
        np.testing.assert_allclose(out[i], limiter_reference(g_req[i], window[i], alpha[i]), atol=1e-12)
    assert (out <= g_req).all()


def test_fused_compressor_equals_static_curve_then_smooth():
    from processors.functional import static_curve_db

    det = torch.logspace(-4.5, 0.5, 900, dtype=torch.float64).reshape(3, 300)  # amplitudes: -90..+10 dB
    thr, ratio, knee, makeup = (
        torch.tensor(v, dtype=torch.float64) for v in ([-20, -30, -10], [4, 1, 20], [6, 0, 24], [0, 3, -6])
    )
    a_att, a_rel = torch.tensor([0.5, 0.9, 0.3], dtype=torch.float64), torch.full((3,), 0.99, dtype=torch.float64)
    gain, s = kernels.compressor(det, 20.0, 1e-12, thr, ratio, knee, makeup, a_att, a_rel)
    level = 20 * torch.log10(det + 1e-12)
    target = level - static_curve_db(level, thr[:, None], ratio[:, None], knee[:, None])
    expected = kernels.smooth(target, a_att, a_rel)
    assert torch.allclose(s, expected, atol=1e-12)
    assert torch.allclose(gain, 10 ** ((makeup[:, None] - expected) / 20), rtol=1e-12)


def test_gradcheck_fused_compressor():
    torch.manual_seed(3)
    det = (torch.rand(3, 40, dtype=torch.float64) * 0.9 + 0.01).requires_grad_()
    params = [
        torch.tensor(v, dtype=torch.float64, requires_grad=True)
        for v in ([-20, -25, -10], [4, 2, 20], [10, 0, 24], [1, 0, -3], [0.5, 0.7, 0.2], [0.9, 0.95, 0.8])
    ]

    def run(det, *p):
        gain, s = kernels.compressor(det, 20.0, 1e-12, *p)
        return gain, s  # both outputs: the gain (with make-up) and the reduction feed the adjoint

    assert torch.autograd.gradcheck(run, (det, *params))


def test_peak_compressor_equals_detector_then_fused_curve():
    torch.manual_seed(4)
    x = torch.randn(2, 3, 400, dtype=torch.float64) * 0.5
    params = [
        torch.tensor(v, dtype=torch.float64) for v in ([-20, -12], [4, 20], [6, 0], [2, -1], [0.5, 0.9], [0.99, 0.95])
    ]
    y, s = kernels.peak_compressor(x, *params)
    gain, s_ref = kernels.compressor(x.abs().amax(dim=1), 20.0, 1e-12, *params)
    assert torch.allclose(s, s_ref, atol=1e-12)
    assert torch.allclose(y, x * gain[:, None], atol=1e-12)


def test_gradcheck_peak_compressor():
    torch.manual_seed(5)
    x = (torch.randn(2, 2, 20, dtype=torch.float64) * 0.5).requires_grad_()
    params = [
        torch.tensor(v, dtype=torch.float64, requires_grad=True)
        for v in ([-15, -10], [4, 2], [8, 0], [1, -3], [0.5, 0.2], [0.9, 0.8])
    ]
    assert torch.autograd.gradcheck(kernels.peak_compressor, (x, *params))


def test_peak_compressor_across_blocks_matches_unfused_path_and_its_gradients():
    """Several CPU blocks (the last one partial), attack slower than release on one signal (the recursion's
    min branch), a zero sample, float32 and float64: outputs and every gradient against the unfused path."""
    assert 1300 > 2 * blocked.BLOCK
    torch.manual_seed(6)
    x = torch.randn(3, 2, 1300, dtype=torch.float64) * 0.4
    x[:, :, 700] = 0.0
    params = [
        torch.tensor(v, dtype=torch.float64)
        for v in ([-20, -12, -30], [4, 20, 2], [6, 0, 12], [2, -1, 0], [0.5, 0.9, 0.999], [0.99, 0.95, 0.9])
    ]
    weights = torch.linspace(-1, 2, 1300, dtype=torch.float64)

    def run(fused, dtype):
        leaves = [t.detach().to(dtype).clone().requires_grad_() for t in (x, *params)]
        if fused:
            y, s = kernels.peak_compressor(*leaves)
        else:
            gain, s = kernels.compressor(leaves[0].abs().amax(dim=1), 20.0, 1e-12, *leaves[1:])
            y = leaves[0] * gain[:, None]
        ((y * weights).sum() + (s * weights.flip(0)).sum()).backward()
        return [y.detach(), s.detach()] + [t.grad for t in leaves]

    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-4)):
        for got, want in zip(run(True, dtype), run(False, dtype)):
            assert got.dtype == dtype
            assert torch.allclose(got, want, rtol=tol, atol=tol * want.abs().max()), (got - want).abs().max()


def test_gradcheck_peak_compressor_attack_slower_than_release():
    torch.manual_seed(7)
    x = (torch.randn(1, 2, 30, dtype=torch.float64) * 0.5).requires_grad_()
    params = [
        torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in ([-15.0], [3.0], [4.0], [0.5], [0.95], [0.6])
    ]
    assert torch.autograd.gradcheck(kernels.peak_compressor, (x, *params))


def test_vectorised_log_and_exp2_are_accurate():
    rng = np.random.default_rng(8)
    v = np.concatenate([10.0 ** rng.uniform(-13, 13, 4000), [1e-12, 1.0, np.sqrt(2.0), 2.0, 0.5, 1e300]])
    out, bits = np.empty_like(v), np.empty(v.size, dtype=np.int64)
    blocked._ln_block(v, out, bits, v.size)
    np.testing.assert_allclose(out, np.log(v), rtol=1e-14, atol=3e-14)  # 3e-13 dB
    w = np.concatenate([rng.uniform(-1022, 1023, 4000), rng.uniform(-40, 2, 4000), [0.0, 0.5, -0.5, 1023.0]])
    out, bits = np.empty_like(w), np.empty(w.size, dtype=np.int64)
    blocked._exp2_block(w, out, bits, w.size)
    np.testing.assert_allclose(out, np.exp2(w), rtol=2e-15, atol=0)
    blocked._exp2_block(np.array([-5000.0, 5000.0]), out, bits, 2)  # clamped, never 0, inf or NaN
    assert out[0] == 2.0**-1022 and out[1] == 2.0**1023


def test_gradcheck_smooth():
    torch.manual_seed(0)
    r = (torch.rand(3, 60, dtype=torch.float64) * 10).requires_grad_()
    a_att = torch.tensor([0.3, 0.5, 0.8], dtype=torch.float64, requires_grad=True)
    a_rel = torch.tensor([0.9, 0.95, 0.7], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(kernels.smooth, (r, a_att, a_rel))


def test_gradcheck_limiter_gain():
    torch.manual_seed(0)
    g_req = (torch.rand(2, 70, dtype=torch.float64) * 0.5 + 0.5).requires_grad_()
    alpha = torch.tensor([0.9, 0.6], dtype=torch.float64, requires_grad=True)
    window = torch.tensor([4, 9])
    assert torch.autograd.gradcheck(lambda q, a: kernels.limiter_gain(q, window, a), (g_req, alpha))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocked_running_minimum_and_fused_backward_keep_the_per_signal_results(dtype):
    """The CPU forward (block minima fused with the release) against the per-signal queue body CUDA compiles:
    the same gain, the same argmin (earliest index on ties, plateaus of 1 included) and the same choices; the
    CPU backward (one reverse pass) against the two-pass body, bit for bit."""
    queue_forward = njit(limiter._limiter_forward_1d)
    two_pass_backward = njit(limiter._limiter_backward_1d)
    rng = np.random.default_rng(5)
    for window in (1, 2, 7, 64, 220):
        for size in (1, 5, 64, 221, 3001):
            g_req = np.minimum(1.0, 0.5 / (rng.random(size) + 1e-3)).astype(dtype)
            g_req[rng.random(size) < 0.4] = 1.0
            g_req[size // 3 : size // 3 + 9] = g_req[size // 2]  # a plateau below 1
            g_req[size // 2 : size // 2 + 3 * window] = 1.0  # blocks without a reduction
            ref = [np.empty(size, dtype), np.empty(size, np.int64), np.empty(size, np.uint8)]
            out = [np.empty(size, dtype), np.empty(size, np.int64), np.empty(size, np.uint8)]
            queue_forward(g_req, window, 0.99, *ref, np.empty(size, np.int64))
            limiter._limiter_forward_blocked(g_req, window, 0.99, *out)
            assert all(np.array_equal(a, b) for a, b in zip(out, ref)), (window, size)
            grad_g = rng.standard_normal(size)
            grads = [(np.zeros(size), np.empty(size), np.empty(1)) for _ in range(2)]
            two_pass_backward(grad_g, *ref, window, 0.99, *grads[0])
            limiter._limiter_backward_fused(grad_g, *ref, window, 0.99, *grads[1])
            assert np.array_equal(grads[0][0], grads[1][0]) and grads[0][2] == grads[1][2], (window, size)


def _composed_limiter(x, ceiling, window, alpha):
    """The limiter as separate steps: linked peak, required gain, kernels.limiter_gain, product."""
    peak = x.abs().amax(dim=1)
    c = ceiling[:, None]
    over = peak > c
    g_req = torch.where(over, c / torch.where(over, peak, torch.ones_like(peak)), torch.ones_like(peak))
    return x * kernels.limiter_gain(g_req, window, alpha)[:, None]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_peak_limiter_equals_the_composition(dtype):
    torch.manual_seed(3)
    x = torch.randn(3, 2, 1500, dtype=dtype) * 0.7
    x[:, 1, 100:300] = -x[:, 0, 100:300]  # ties between the channels: amax shares the gradient
    x[1, :, 600:640] = 0.0
    ceiling = torch.tensor([0.9, 0.5, 0.3], dtype=dtype)
    window, alpha = torch.tensor([1, 40, 600]), torch.tensor([0.99, 0.9, 0.999], dtype=dtype)
    weight = torch.linspace(-1, 2, x.numel(), dtype=dtype).view_as(x)
    results = []
    for fn in (kernels.peak_limiter, _composed_limiter):
        leaves = [t.clone().requires_grad_() for t in (x, ceiling, alpha)]
        y = fn(leaves[0], leaves[1], window, leaves[2])
        (y * weight).sum().backward()
        results.append([y.detach()] + [t.grad for t in leaves])
    (fused, *fused_grads), (composed, *composed_grads) = results
    assert torch.equal(fused, composed)  # the forward is the same arithmetic, bit for bit
    tol = 1e-5 if dtype == torch.float32 else 1e-12  # gradients: the fused adjoint sums in float64
    for a, b in zip(fused_grads, composed_grads):
        assert torch.allclose(a, b, rtol=tol, atol=tol * float(b.abs().max()))


def test_gradcheck_fused_peak_limiter():
    torch.manual_seed(4)
    x = (torch.randn(2, 2, 60, dtype=torch.float64) * 0.8).requires_grad_()
    ceiling = torch.tensor([0.5, 0.7], dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor([0.9, 0.6], dtype=torch.float64, requires_grad=True)
    window = torch.tensor([4, 9])
    assert torch.autograd.gradcheck(lambda v, c, a: kernels.peak_limiter(v, c, window, a), (x, ceiling, alpha))


def test_limiter_lookahead_must_be_at_least_one_sample():
    with pytest.raises(ValueError, match="lookahead must be at least 1 sample"):
        kernels.limiter_gain(torch.ones(1, 10), torch.tensor([0]), torch.tensor([0.5]))


def test_time_coefficient_and_window():
    a = kernels.time_coefficient(torch.tensor(10.0, dtype=torch.float64), 48000)
    assert float(a) == pytest.approx(np.exp(-1 / (0.010 * 48000)), rel=1e-15)
    assert kernels.window_samples(torch.tensor([0.001, 5.0]), 44100).tolist() == [1, 220]


def test_cuda_kernels_logic_in_simulator():
    """The CUDA kernels (same bodies, time-major layout) under numba's CUDA simulator, against the CPU path."""
    script = textwrap.dedent(
        """
        import numpy as np
        from processors import kernels as b
        from processors.kernels import compression, limiter, smoothing
        k = b.cuda_kernels()
        rng = np.random.default_rng(0)
        S, T = 3, 24
        r = rng.random((S, T)) * 10
        aa, ar = np.array([0.3, 0.5, 0.8]), np.array([0.9, 0.95, 0.7])
        s, att = np.empty((S, T)), np.empty((S, T), np.uint8)
        smoothing._FORWARD.serial(r, aa, ar, s, att)
        sg, attg = np.empty((T, S)), np.empty((T, S), np.uint8)
        k["smooth_forward"][1, 32](np.ascontiguousarray(r.T), aa, ar, sg, attg)
        assert np.abs(sg.T - s).max() < 1e-12 and (attg.T == att).all()
        gs = rng.standard_normal((S, T))
        gr, ga = np.empty((S, T)), np.empty((S, 2))
        smoothing._BACKWARD.serial(gs, r, s, att, aa, ar, gr, ga)
        grg, gag = np.empty((T, S)), np.empty((S, 2))
        k["smooth_backward"][1, 32](np.ascontiguousarray(gs.T), np.ascontiguousarray(r.T), sg, attg, aa, ar, grg, gag)
        assert np.abs(grg.T - gr).max() < 1e-12 and np.abs(gag - ga).max() < 1e-12
        det = rng.random((S, T)) * 0.9 + 0.01
        cp = [np.array(v, float) for v in ([-20, -25, -10], [4, 2, 20], [10, 0, 24], [1, 0, -3], [0.5, 0.7, 0.2],
                                           [0.9, 0.95, 0.8])]
        out = [np.empty((S, T)), np.empty((S, T)), np.empty((S, T), np.uint8), np.empty((S, T), np.uint8),
               np.empty((S, T))]
        compression._FORWARD.serial(det, 20.0, 1e-12, *cp, *out)
        outg = [np.empty((T, S)), np.empty((T, S)), np.empty((T, S), np.uint8), np.empty((T, S), np.uint8),
                np.empty((T, S))]
        k["compressor_forward"][1, 32](np.ascontiguousarray(det.T), 20.0, 1e-12, *cp, *outg)
        assert all(np.array_equal(o.T, c) for o, c in zip(outg, out))
        gd, gp = np.empty((S, T)), np.empty((S, 6))
        thr, ratio, knee, _, aa2, ar2 = cp
        compression._BACKWARD.serial(gs, gs * 0.5, det, *out, 20.0, 1e-12, thr, ratio, knee, aa2, ar2, gd, gp)
        gdg, gpg = np.empty((T, S)), np.empty((S, 6))
        k["compressor_backward"][1, 32](np.ascontiguousarray(gs.T), np.ascontiguousarray(gs.T * 0.5),
                                        np.ascontiguousarray(det.T), *outg, 20.0, 1e-12, thr, ratio, knee, aa2, ar2,
                                        gdg, gpg)
        assert np.abs(gdg.T - gd).max() < 1e-9 and np.abs(gpg - gp).max() < 1e-9
        q = np.minimum(1.0, 0.5 / (rng.random((S, T)) + 1e-3))
        w, al = np.array([1, 3, 6]), np.array([0.9, 0.5, 0.99])
        g, am, rp = np.empty((S, T)), np.empty((S, T), np.int64), np.empty((S, T), np.uint8)
        limiter._FORWARD.serial(q, w, al, g, am, rp)
        gg, amg, rpg = np.empty((T, S)), np.empty((T, S), np.int64), np.empty((T, S), np.uint8)
        k["limiter_forward"][1, 32](np.ascontiguousarray(q.T), w, al, gg, amg, rpg, np.empty((T, S), np.int64))
        assert np.abs(gg.T - g).max() < 1e-12 and (amg.T == am).all() and (rpg.T == rp).all()
        gq, galpha = np.zeros((S, T)), np.empty((S, 1))
        limiter._BACKWARD.serial(gs, g, am, rp, w, al, gq, galpha)
        gqg, galg = np.zeros((T, S)), np.empty((S, 1))
        k["limiter_backward"][1, 32](np.ascontiguousarray(gs.T), gg, amg, rpg, w, al, gqg, np.empty((T, S)), galg)
        assert np.abs(gqg.T - gq).max() < 1e-12 and np.abs(galg - galpha).max() < 1e-12
        print("ok")
        """
    )
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    if "No module named 'numba_cuda'" in done.stderr or "cannot import name 'cuda'" in done.stderr:
        pytest.skip("numba-cuda is not installed")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


def test_cuda_branch_of_the_autograd_functions_in_simulator():
    """The torch side of the CUDA path (time-major copies, launches, gradients) on CPU tensors + simulator."""
    script = textwrap.dedent(
        """
        import torch
        from processors import kernels as b
        from processors.kernels import dispatch

        torch.manual_seed(0)
        r = torch.rand(3, 20, dtype=torch.float64) * 10
        det = torch.rand(3, 20, dtype=torch.float64) * 0.9 + 0.01
        q = torch.clamp(0.5 / (torch.rand(3, 20, dtype=torch.float64) + 1e-3), max=1.0)
        a1 = torch.tensor([0.3, 0.5, 0.8], dtype=torch.float64)
        a2 = torch.tensor([0.9, 0.95, 0.7], dtype=torch.float64)
        cp = [torch.tensor(v, dtype=torch.float64) for v in ([-20, -25, -10], [4, 2, 20], [10, 0, 24], [1, 0, -3])]
        window = torch.tensor([1, 3, 6])

        def run():
            leaves = [t.clone().requires_grad_() for t in (r, det, q, a1, a2, *cp)]
            r_, det_, q_, a1_, a2_, *cp_ = leaves
            x3 = det_.view(3, 2, 10) - 0.5
            outs = [b.smooth(r_, a1_, a2_), *b.compressor(det_, 20.0, 1e-12, *cp_, a1_, a2_),
                    *b.peak_compressor(x3, *cp_, a1_, a2_), b.limiter_gain(q_, window, a2_)]
            sum((o * torch.linspace(-1, 2, o.numel(), dtype=o.dtype).view_as(o)).sum() for o in outs).backward()
            return [o.detach() for o in outs] + [t.grad for t in leaves]

        cpu = run()
        dispatch.SIMULATE_DEVICE_PATH = True
        sim = run()
        for x, y in zip(cpu, sim):
            assert torch.allclose(x, y, atol=1e-10), (x, y)
        print("ok")
        """
    )
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    r = torch.rand(4, 3000, dtype=torch.float64) * 10
    a_att, a_rel = torch.full((4,), 0.9, dtype=torch.float64), torch.full((4,), 0.999, dtype=torch.float64)
    cpu = kernels.smooth(r, a_att, a_rel)
    gpu = kernels.smooth(r.cuda(), a_att.cuda(), a_rel.cuda()).cpu()
    assert torch.allclose(cpu, gpu, atol=1e-12)
    x = torch.randn(4, 2, 3000, dtype=torch.float64)
    params = [torch.full((4,), v, dtype=torch.float64) for v in (-12.0, 4.0, 6.0, 1.0, 0.9, 0.999)]
    cpu = kernels.peak_compressor(x, *params)
    gpu = kernels.peak_compressor(x.cuda(), *[p.cuda() for p in params])
    assert all(torch.allclose(a, b.cpu(), atol=1e-12) for a, b in zip(cpu, gpu))
    g_req = torch.clamp(0.5 / (torch.rand(4, 3000, dtype=torch.float64) + 1e-3), max=1.0)
    window, alpha = torch.tensor([1, 5, 50, 200]), torch.full((4,), 0.99, dtype=torch.float64)
    cpu = kernels.limiter_gain(g_req, window, alpha)
    gpu = kernels.limiter_gain(g_req.cuda(), window.cuda(), alpha.cuda()).cpu()
    assert torch.allclose(cpu, gpu, atol=1e-12)


def every_entry_point(n_signals: int, size: int) -> list[torch.Tensor]:
    """Outputs and gradients (to every input) of each entry point on ``n_signals`` signals: every CPU kernel."""
    gen = torch.Generator().manual_seed(n_signals)
    r = torch.rand(n_signals, size, dtype=torch.float64, generator=gen) * 10
    det = torch.rand(n_signals, size, dtype=torch.float64, generator=gen) * 0.9 + 0.01
    q = torch.clamp(0.5 / (torch.rand(n_signals, size, dtype=torch.float64, generator=gen) + 1e-3), max=1.0)
    x = torch.randn(n_signals, 2, size, generator=gen)  # float32, as audio
    a1 = torch.linspace(0.3, 0.99, n_signals, dtype=torch.float64)
    a2 = torch.linspace(0.999, 0.7, n_signals, dtype=torch.float64)
    cp = [torch.linspace(lo, hi, n_signals, dtype=torch.float64) for lo, hi in ((-30, -10), (2, 8), (0, 12), (0, 3))]
    window = torch.arange(n_signals) * 37 + 1
    ceiling = torch.linspace(0.3, 0.9, n_signals)
    leaves = [t.clone().requires_grad_() for t in (r, det, q, x, a1, a2, ceiling, *cp)]
    r_, det_, q_, x_, a1_, a2_, ceiling_, *cp_ = leaves
    outs = [
        kernels.smooth(r_, a1_, a2_),
        *kernels.compressor(det_, 20.0, 1e-12, *cp_, a1_, a2_),
        *kernels.peak_compressor(x_, *[c.float() for c in cp_], a1_.float(), a2_.float()),
        kernels.limiter_gain(q_, window, a2_),
        kernels.peak_limiter(x_, ceiling_, window, a2_.float()),
    ]
    sum((o * torch.linspace(-1, 2, o.numel(), dtype=o.dtype).view_as(o)).sum().double() for o in outs).backward()
    return [o.detach() for o in outs] + [t.grad for t in leaves]


def kernel_calls(monkeypatch) -> dict:
    """Count the calls of every CPU kernel's two compilations (and the rows each got) from here on."""
    from processors.kernels import compression, smoothing

    calls = {"serial": [], "parallel": []}
    for module in (smoothing, compression, limiter):
        for kernel in vars(module).values():
            if isinstance(kernel, dispatch.Kernel):
                for kind in calls:
                    compiled = getattr(kernel, kind)

                    def counted(*arrays, compiled=compiled, kind=kind):
                        calls[kind].append(arrays[0].shape[0])
                        return compiled(*arrays)

                    monkeypatch.setattr(kernel, kind, counted)
    return calls


@pytest.mark.skipif(dispatch.numba.config.NUMBA_NUM_THREADS < 2, reason="numba is limited to one thread")
@pytest.mark.parametrize("n_signals", [2, 3, 6])
def test_threaded_paths_equal_one_thread_bit_for_bit(monkeypatch, n_signals):
    """Every kernel on 2, 3 and 6 signals on numba's pool: outputs, records' effects and gradients equal the
    one-thread run's to the last bit."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        calls = kernel_calls(monkeypatch)
        alone = every_entry_point(n_signals, 3000)
        assert not calls["parallel"] and set(calls["serial"]) == {n_signals}
        torch.set_num_threads(2)
        monkeypatch.setattr(dispatch, "MIN_ELEMENTS_PER_THREAD", 1)
        calls["serial"].clear()
        together = every_entry_point(n_signals, 3000)
    finally:
        torch.set_num_threads(threads)
    assert len(calls["parallel"]) == 10 and not calls["serial"]
    for a, b in zip(alone, together, strict=True):
        assert torch.equal(a, b)


def test_thread_count_follows_the_settings(monkeypatch):
    monkeypatch.setattr(dispatch, "MIN_ELEMENTS_PER_THREAD", 1000)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert dispatch.cpu_threads(1, 10**6) == 1  # one signal: one thread
        assert dispatch.cpu_threads(3, 10**6) == min(2, dispatch.numba.config.NUMBA_NUM_THREADS)
        assert dispatch.cpu_threads(3, 400) == 1  # too little work to share
        torch.set_num_threads(1)
        assert dispatch.cpu_threads(8, 10**6) == 1  # torch's setting holds for the kernels too
    finally:
        torch.set_num_threads(threads)


def test_limiter_keeps_no_records_without_a_gradient():
    """Without a gradient the limiter's forward keeps a ring of minima and one ramp element instead of records
    along time; its outputs are the same bit for bit."""
    x = torch.randn(2, 2, 5000)
    x[:, :, 1000:1100] *= 4
    q = torch.clamp(0.5 / (torch.rand(2, 5000) + 1e-3), max=1.0)
    ceiling, window, alpha = torch.tensor([0.5, 0.8]), torch.tensor([50, 3]), torch.tensor([0.999, 0.99])
    assert records_gradient(x, x.clone().requires_grad_()) and not records_gradient(x, alpha)
    with torch.no_grad():
        assert not records_gradient(x.clone().requires_grad_())
    for function, inputs, length in (
        (limiter._PeakLimiter, (x, ceiling, window, alpha), 49 + 5000),
        (limiter._LimiterGain, (q, window, alpha), 5000),
    ):
        kept, scratch = function.apply(*inputs, True), function.apply(*inputs, False)
        assert kept[-2].shape == kept[-1].shape == (2, length)
        assert scratch[-2].shape == (2, 128) and scratch[-1].shape == (2, 1)  # 128: a power of two >= 2 x 50
        assert all(torch.equal(a, b) for a, b in zip(kept[:-2], scratch[:-2], strict=True))  # y (and g): the same
