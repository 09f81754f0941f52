"""The lookahead limiter's gain: a forward-looking running minimum of the required gain over the lookahead, a
moving average over the same length (a linear ramp into every peak, never above the required gain), then an
instant attack and a one-pole release towards 1; its exact adjoint, its CPU compilation, the autograd Function
and the entry points."""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from drl.fft import records_gradient
from processors.kernels.dispatch import Kernel, needed, on_device


# --- per-signal bodies (1-D arrays), shared by the CPU and CUDA compilations --------------------------------
def _limiter_forward_1d(g_req, window, alpha, g, argmin, ramp, queue):
    size = g_req.shape[0]
    # forward-looking running minimum over [n, n + window - 1] (monotonic queue, walked backwards in time)
    head = 0
    tail = 0
    for k in range(size):
        n = size - 1 - k
        while tail > head and g_req[queue[tail - 1]] >= g_req[n]:
            tail -= 1
        queue[tail] = n
        tail += 1
        while queue[head] > n + window - 1:
            head += 1
        argmin[n] = queue[head]
    # moving average of the minimum over [n - window + 1, n] (1 before the start), then release
    total = window * 1.0
    prev = 1.0
    for n in range(size):
        total += g_req[argmin[n]]
        if n >= window:
            total -= g_req[argmin[n - window]]
        else:
            total -= 1.0
        avg = total / window
        if avg > g_req[n]:  # round-off guard only: avg <= g_req holds exactly in real arithmetic
            avg = g_req[n] * 1.0
        rise = prev + (1.0 - alpha) * (1.0 - prev)
        if avg <= rise:
            prev = avg
            ramp[n] = 1
        else:
            prev = rise
            ramp[n] = 0
        g[n] = prev


def _limiter_backward_1d(grad_g, g, argmin, ramp, window, alpha, grad_req, grad_avg, grad_alpha):
    size = g.shape[0]
    carry = 0.0
    g_alpha = 0.0
    for k in range(size):
        n = size - 1 - k
        lam = grad_g[n] + carry
        if ramp[n]:
            grad_avg[n] = lam
            carry = 0.0
        else:
            grad_avg[n] = 0.0
            prev = g[n - 1] * 1.0 if n > 0 else 1.0
            # rise = prev + (1 - alpha)(1 - prev): d/dalpha = prev - 1, d/dprev = alpha
            g_alpha += lam * (prev - 1.0)
            carry = lam * alpha
    # d avg[n] / d min[k] = 1/window for n in [k, k + window - 1]; d min[k] / d g_req[argmin[k]] = 1
    total = 0.0
    for j in range(size):
        k = size - 1 - j
        total += grad_avg[k]
        if k + window <= size - 1:
            total -= grad_avg[k + window]
        grad_req[argmin[k]] += total / window
    grad_alpha[0] = g_alpha


# --- CPU compilation: the running minimum in blocks, fused with the release; threads over signals ----------
# The minimum over [n, n + window - 1] is the smaller of the suffix minimum of n's block of ``window`` samples and
# the prefix minimum of the next block up to n + window - 1 (van Herk / Gil-Werman): two short scans per block
# instead of a branchy queue. Ties go to the earliest index on both sides (suffix scan <=, prefix scan <, the
# suffix preferred on equality), as in the queue of _limiter_forward_1d: the records, and so the gradients, are
# the same. The moving average and the release follow block by block while the block is in L1.
# When no gradient needs the records, argmin is a ring of a power of two >= 2 window samples (the moving average
# reads each minimum back one window later) and ramp a single element: the same code, indices masked.
@njit(cache=True, error_model="numpy")
def _limiter_forward_blocked(g_req, window, alpha, g, argmin, ramp):
    size = g_req.shape[0]
    # the masks of the indices into argmin and ramp: -1 (all bits) for a whole record
    at_mask = -1 if argmin.shape[0] == size else argmin.shape[0] - 1
    ramp_mask = -1 if ramp.shape[0] == size else 0
    suffix = np.empty(window, dtype=g_req.dtype)
    suffix_at = np.empty(window, dtype=np.int64)
    prefix = np.empty(window, dtype=g_req.dtype)
    prefix_at = np.empty(window, dtype=np.int64)
    state = np.empty(2)
    total = window * 1.0
    prev = 1.0
    not_one = 0  # scanned up to here: the first index at or after it where g_req != 1 (no reduction wanted)
    for b0 in range(0, size, window):
        end = min(b0 + window, size)
        not_one = max(not_one, b0)
        reach = min(end + window - 1, size)  # the windows of this block's samples end before reach
        while not_one < reach and g_req[not_one] == 1.0:
            not_one += 1
        if not_one >= reach:  # only ones in every window: the minimum is at the window's first sample
            for n in range(b0, end):
                argmin[n & at_mask] = n
            _release_block(g_req, window, alpha, g, argmin, ramp, at_mask, ramp_mask, b0, end, total, prev, state)
            total, prev = state[0], state[1]
            continue
        v = g_req[end - 1]
        at = end - 1
        for i in range(end - 1, b0 - 1, -1):
            q = g_req[i]
            take = q <= v
            v = q if take else v
            at = i if take else at
            suffix[i - b0] = v
            suffix_at[i - b0] = at
        nxt = min(end + window, size)
        if end < size:
            v = g_req[end]
            at = end
            for i in range(end, nxt):
                q = g_req[i]
                take = q < v
                v = q if take else v
                at = i if take else at
                prefix[i - end] = v
                prefix_at[i - end] = at
        for n in range(b0, end):
            j = min(n + window - 1, size - 1) - end  # where the window ends in the next block (< 0: in this one)
            k = suffix_at[n - b0]
            if j >= 0 and prefix[j] < suffix[n - b0]:
                k = prefix_at[j]
            argmin[n & at_mask] = k
        _release_block(g_req, window, alpha, g, argmin, ramp, at_mask, ramp_mask, b0, end, total, prev, state)
        total, prev = state[0], state[1]


@njit(cache=True, error_model="numpy")
def _release_block(g_req, window, alpha, g, argmin, ramp, at_mask, ramp_mask, b0, end, total, prev, state):
    """The moving average of the minima and the release over samples b0:end from (total, prev); the new pair
    goes to ``state``; at_mask and ramp_mask mask the indices into argmin and ramp."""
    for n in range(b0, end):
        total += g_req[argmin[n & at_mask]]
        if n >= window:
            total -= g_req[argmin[(n - window) & at_mask]]
        else:
            total -= 1.0
        avg = total / window
        if avg > g_req[n]:
            avg = g_req[n] * 1.0
        rise = prev + (1.0 - alpha) * (1.0 - prev)
        ramp[n & ramp_mask] = avg <= rise
        prev = min(avg, rise)  # avg where avg <= rise: the compare stays off the recursion's critical path
        g[n] = prev
    state[0] = total
    state[1] = prev


@njit(cache=True, error_model="numpy")
def _limiter_backward_fused(grad_g, g, argmin, ramp, window, alpha, grad_req, grad_avg, grad_alpha):
    # _limiter_backward_1d's two reverse passes in one: grad_avg[n + window] is ready when step n needs it
    size = g.shape[0]
    state = np.zeros(4)
    at = argmin[size - 1] if size > 0 else 0
    at = _reverse_block(grad_g, 0, size, size - 1, g, argmin, ramp, window, alpha, grad_avg, -1, grad_req, state, at)
    if size > 0:
        grad_req[at] += state[3]
    grad_alpha[0] = state[1]


@njit(cache=True, error_model="numpy")
def _reverse_block(grad_g, b0, b1, last, g, argmin, ramp, window, alpha, grad_avg, mask, grad_req, state, at):
    """The ramp/release's and the moving average's adjoint over samples b1 - 1 down to b0 (of last + 1), given
    grad_g[n - b0] = dLoss/dg[n] without the future: dLoss/davg[n] goes to grad_avg[n & mask] (mask -1: the whole
    array; else a ring of more than window samples), state holds (carry, g_alpha, total, run) from block to
    block; returns ``at``, the source of the current run's minimum. The samples whose minimum comes from one
    index form a run, so its share of dLoss/dg_req is summed in ``run`` and added to grad_req[at] once the run
    ends (the same additions in the same order as adding into grad_req sample by sample)."""
    carry, g_alpha, total, run = state[0], state[1], state[2], state[3]
    for n in range(b1 - 1, b0 - 1, -1):
        lam = grad_g[n - b0] + carry
        if ramp[n]:
            ga = lam
            carry = 0.0
        else:
            ga = 0.0
            prev = g[n - 1] * 1.0 if n > 0 else 1.0
            # rise = prev + (1 - alpha)(1 - prev): d/dalpha = prev - 1, d/dprev = alpha
            g_alpha += lam * (prev - 1.0)
            carry = lam * alpha
        # d avg[n] / d min[k] = 1/window for n in [k, k + window - 1]; d min[k] / d g_req[argmin[k]] = 1
        total += ga
        if n + window <= last:
            total -= grad_avg[(n + window) & mask]
        grad_avg[n & mask] = ga
        if argmin[n] != at:
            grad_req[at] += run
            at = argmin[n]
            run = 0.0
        run += total / window
    state[0], state[1], state[2], state[3] = carry, g_alpha, total, run
    return at


BLOCK = 512  # samples per block of the fused limiter's vectorised passes (L1-resident)


@njit(cache=True, error_model="numpy")
def _peak_block(x, t0, m, det):
    """det[:m] = the maximum of |x[:, t0:t0+m]| over the channels."""
    row = x[0, t0 : t0 + m]
    for j in range(m):
        det[j] = abs(row[j])
    for c in range(1, x.shape[0]):
        row = x[c, t0 : t0 + m]
        for j in range(m):
            det[j] = max(det[j], abs(row[j]))


@njit(cache=True, error_model="numpy")
def _peak_limiter_forward_1d(x, ceiling, window, pad, alpha, y, g, argmin, ramp):
    # x, y: (C, T); g, argmin, ramp: (pad + T,), the first pad samples before the start (g_req = 1 there)
    size = x.shape[1]
    g_req = np.empty(pad + size, dtype=x.dtype)
    g_req[:pad] = 1.0
    for t0 in range(0, size, BLOCK):
        m = min(BLOCK, size - t0)
        req = g_req[pad + t0 : pad + t0 + m]
        _peak_block(x, t0, m, req)
        for j in range(m):
            det = req[j]
            req[j] = ceiling / det if det > ceiling else 1.0
    _limiter_forward_blocked(g_req, window, alpha, g, argmin, ramp)
    gain = g[pad:]
    for c in range(x.shape[0]):
        row, out = x[c], y[c]
        for t in range(size):
            out[t] = row[t] * gain[t]


@njit(cache=True, error_model="numpy")
def _peak_limiter_backward_1d(grad_y, x, ceiling, window, pad, alpha, g, argmin, ramp, grad_x, grads):
    # grads: d/d ceiling, d/d alpha. _limiter_backward_fused's reverse pass, with d/d g taken from grad_y and x
    # block by block and the moving average's adjoint kept in a ring of more than window samples: the one
    # array along time is d/d g_req, whose share of d/d x and d/d ceiling a last pass adds
    channels, size = x.shape
    length = pad + size
    grad_req = np.zeros(length)
    ring = 1
    while ring <= window:
        ring *= 2
    mask = ring - 1
    grad_avg = np.zeros(ring)
    grad_g = np.zeros(BLOCK)
    state = np.zeros(4)
    at = argmin[length - 1]
    for b1 in range(length, 0, -BLOCK):
        b0 = max(b1 - BLOCK, 0)
        m = b1 - b0
        t0 = max(b0 - pad, 0)  # the real samples of the block: [t0, b1 - pad)
        skip = t0 + pad - b0
        for j in range(m):
            grad_g[j] = 0.0
        if b1 > pad:
            for c in range(channels):
                gy, row = grad_y[c, t0 : b1 - pad], x[c, t0 : b1 - pad]
                acc = grad_g[skip:m]
                for j in range(m - skip):
                    acc[j] += gy[j] * row[j]
        at = _reverse_block(
            grad_g, b0, b1, length - 1, g, argmin, ramp, window, alpha, grad_avg, mask, grad_req, state, at
        )
    grad_req[at] += state[3]
    grads[1] = state[1]
    # g_req = ceiling / det where det > ceiling: d/d ceiling = 1 / det, d/d det = -ceiling / det^2, shared among
    # the channels at the maximum (as torch.amax shares it), each with the sign of its sample
    det = np.empty(BLOCK, dtype=x.dtype)
    share = np.empty(BLOCK)
    ties = np.empty(BLOCK)
    g_ceiling = 0.0
    for t0 in range(0, size, BLOCK):
        m = min(BLOCK, size - t0)
        _peak_block(x, t0, m, det)
        gain = g[pad + t0 : pad + t0 + m]
        louder = 0.0
        for j in range(m):
            louder = max(louder, det[j])
        if not louder > ceiling:  # no sample over the ceiling: g_req = 1 throughout, only the product's share
            for c in range(channels):
                gy, gx = grad_y[c, t0 : t0 + m], grad_x[c, t0 : t0 + m]
                for j in range(m):
                    gx[j] = gy[j] * gain[j] + 0.0
            continue
        for j in range(m):
            ties[j] = 0.0
        for c in range(channels):
            row = x[c, t0 : t0 + m]
            for j in range(m):
                ties[j] += 1.0 if abs(row[j]) == det[j] else 0.0
        d = grad_req[pad + t0 : pad + t0 + m]
        for j in range(m):
            over = det[j] > ceiling
            inv = 1.0 / det[j]
            g_ceiling += d[j] * inv if over else 0.0
            share[j] = -d[j] * ceiling * inv * inv / ties[j] if over else 0.0
        for c in range(channels):
            row, gy, gx = x[c, t0 : t0 + m], grad_y[c, t0 : t0 + m], grad_x[c, t0 : t0 + m]
            for j in range(m):
                v = row[j]
                at_max = abs(v) == det[j]
                to_x = share[j] if v > 0 else -share[j]
                gx[j] = gy[j] * gain[j] + (to_x if at_max else 0.0)
    grads[0] = g_ceiling


def _limiter_forward_cpu(g_req, window, alpha, g, argmin, ramp):
    for i in prange(g_req.shape[0]):
        _limiter_forward_blocked(g_req[i], window[i], alpha[i], g[i], argmin[i], ramp[i])


def _limiter_backward_cpu(grad_g, g, argmin, ramp, window, alpha, grad_req, grad_alpha):
    for i in prange(g.shape[0]):
        grad_avg = np.empty(g.shape[1], dtype=np.float64)
        _limiter_backward_fused(
            grad_g[i], g[i], argmin[i], ramp[i], window[i], alpha[i], grad_req[i], grad_avg, grad_alpha[i]
        )


def _peak_limiter_forward_cpu(x, ceiling, window, pad, alpha, y, g, argmin, ramp):
    for i in prange(x.shape[0]):
        _peak_limiter_forward_1d(x[i], ceiling[i], window[i], pad, alpha[i], y[i], g[i], argmin[i], ramp[i])


def _peak_limiter_backward_cpu(grad_y, x, ceiling, window, pad, alpha, g, argmin, ramp, grad_x, grads):
    for i in prange(x.shape[0]):
        _peak_limiter_backward_1d(
            grad_y[i], x[i], ceiling[i], window[i], pad, alpha[i], g[i], argmin[i], ramp[i], grad_x[i], grads[i]
        )


# --- autograd Function and entry points -------------------------------------------------------------------
_FORWARD = Kernel("limiter_forward", _limiter_forward_cpu)
_BACKWARD = Kernel("limiter_backward", _limiter_backward_cpu)


def _record_shapes(n_signals: int, length: int, window: torch.Tensor, record: bool) -> tuple[tuple, tuple]:
    """The shapes of the argmin and ramp records on the CPU: (S, length) each, or without ``record`` a ring of a
    power of two >= 2 lookaheads per signal and a single element (the forward's scratch, see
    _limiter_forward_blocked)."""
    ring = 1 << (2 * int(window.max()) - 1).bit_length()
    if record or ring >= length:
        return (n_signals, length), (n_signals, length)
    return (n_signals, ring), (n_signals, 1)


class _LimiterGain(torch.autograd.Function):
    """The limiter's gain: g_req (S, T), lookahead (S,) samples, release coefficient (S,), whether to keep the
    records for a backward -> (g (S, T), and the forward's records: where each running minimum came from, and
    whether the ramp or the release won; on the CPU without ``record`` only the forward's scratch)."""

    @staticmethod
    def forward(g_req, window, alpha, record):
        cuda, shape = on_device(g_req), g_req.shape
        g_k, g = Kernel.empty(shape, g_req.dtype, g_req.device, cuda)
        argmin_shape, ramp_shape = _record_shapes(*shape, window, record or cuda)
        argmin_k, argmin = Kernel.empty(argmin_shape, torch.int64, g_req.device, cuda)
        ramp_k, ramp = Kernel.empty(ramp_shape, torch.uint8, g_req.device, cuda)
        scratch = [Kernel.empty(shape, torch.int64, g_req.device, cuda)[0]] if cuda else []  # the CPU allocates its own
        _FORWARD(
            cuda,
            shape[0],
            Kernel.along_time(g_req, cuda),
            window.to(torch.int64).contiguous(),
            alpha.detach().double().contiguous(),
            g_k,
            argmin_k,
            ramp_k,
            *scratch,
        )
        return g, argmin, ramp

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, window, alpha, _ = inputs
        g, argmin, ramp = output
        ctx.mark_non_differentiable(argmin, ramp)
        ctx.save_for_backward(g, argmin, ramp, window, alpha)

    @staticmethod
    def backward(ctx, grad_g, *_):
        if not any(ctx.needs_input_grad):
            return None, None, None, None
        g, argmin, ramp, window, alpha = ctx.saved_tensors
        cuda = on_device(g)
        grad_req_k, grad_req = Kernel.empty(g.shape, g.dtype, g.device, cuda)
        grad_req_k.zero_()
        scratch = [Kernel.empty(g.shape, torch.float64, g.device, cuda)[0]] if cuda else []  # the CPU allocates its own
        grad_alpha = torch.empty((g.shape[0], 1), dtype=torch.float64, device=g.device)
        _BACKWARD(
            cuda,
            g.shape[0],
            *(Kernel.along_time(t, cuda) for t in (grad_g, g, argmin, ramp)),
            window.to(torch.int64).contiguous(),
            alpha.detach().double().contiguous(),
            grad_req_k,
            *scratch,
            grad_alpha,
        )
        return needed(ctx, grad_req, None, grad_alpha[:, 0].to(alpha.dtype), None)


def limiter_gain(
    g_req: torch.Tensor, lookahead_samples: torch.Tensor, release_coefficient: torch.Tensor
) -> torch.Tensor:
    """Lookahead ramp + release of a required gain g_req (S, T) in (0, 1]; ``lookahead_samples`` (S,) the ramp's
    length (whole samples >= 1), ``release_coefficient`` (S,) the one-pole release coefficient (see
    :func:`time_coefficient`). Returns g (S, T) with g <= g_req; differentiable in g_req and the coefficient."""
    if bool((lookahead_samples < 1).any()):
        raise ValueError("limiter lookahead must be at least 1 sample")
    # Ones before the start (no reduction there) make the ramp before an early peak start before sample 0,
    # so the first samples are already at or below g_req.
    pad = int(lookahead_samples.max()) - 1
    padded = torch.nn.functional.pad(g_req, (pad, 0), value=1.0) if pad else g_req
    record = records_gradient(g_req, release_coefficient)  # a backward will need the forward's records
    return _LimiterGain.apply(padded, lookahead_samples.to(g_req.device), release_coefficient, record)[0][:, pad:]


def window_samples(time_ms: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """A time in ms -> a whole number of samples >= 1 (int64)."""
    return torch.clamp(torch.round(time_ms.detach() * (sample_rate / 1000.0)), min=1).to(torch.int64)


_PEAK_FORWARD = Kernel("peak_limiter_forward", _peak_limiter_forward_cpu)
_PEAK_BACKWARD = Kernel("peak_limiter_backward", _peak_limiter_backward_cpu)


class _PeakLimiter(torch.autograd.Function):
    """The whole peak limiter in one pass on the CPU: x (S, C, T), ceiling (S,) as an amplitude, lookahead (S,)
    samples, release coefficient (S,), whether to keep the records for a backward -> (y (S, C, T), and the
    forward's records along the padded time axis: the gain, where each running minimum came from, whether the
    ramp or the release won; without ``record`` the last two are only the forward's scratch)."""

    @staticmethod
    def forward(x, ceiling, window, alpha, record):
        n_signals, _, size = x.shape
        pad = int(window.max()) - 1
        y = torch.empty_like(x, memory_format=torch.contiguous_format)
        g = torch.empty((n_signals, pad + size), dtype=x.dtype)
        argmin_shape, ramp_shape = _record_shapes(n_signals, pad + size, window, record)
        argmin = torch.empty(argmin_shape, dtype=torch.int32)
        ramp = torch.empty(ramp_shape, dtype=torch.uint8)
        _PEAK_FORWARD(
            False,
            n_signals,
            x.detach().contiguous(),
            ceiling.detach().to(x.dtype).contiguous(),
            window.contiguous(),
            pad,
            alpha.detach().double().contiguous(),
            y,
            g,
            argmin,
            ramp,
        )
        return y, g, argmin, ramp

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, ceiling, window, alpha, _ = inputs
        _, g, argmin, ramp = output
        ctx.mark_non_differentiable(g, argmin, ramp)
        ctx.save_for_backward(x, ceiling, window, alpha, g, argmin, ramp)
        ctx.set_materialize_grads(False)  # no (S, T) tensors of zeros for the records' gradients

    @staticmethod
    def backward(ctx, grad_y, *_):
        if not any(ctx.needs_input_grad) or grad_y is None:
            return None, None, None, None, None
        x, ceiling, window, alpha, g, argmin, ramp = ctx.saved_tensors
        grad_x = torch.empty(x.shape, dtype=x.dtype)
        grads = torch.empty((x.shape[0], 2), dtype=torch.float64)
        _PEAK_BACKWARD(
            False,
            x.shape[0],
            grad_y.detach().contiguous(),
            x.detach().contiguous(),
            ceiling.detach().to(x.dtype).contiguous(),
            window.contiguous(),
            g.shape[1] - x.shape[2],
            alpha.detach().double().contiguous(),
            g,
            argmin,
            ramp,
            grad_x,
            grads,
        )
        return needed(ctx, grad_x, grads[:, 0].to(ceiling.dtype), None, grads[:, 1].to(alpha.dtype), None)


def peak_limiter(
    x: torch.Tensor, ceiling: torch.Tensor, lookahead_samples: torch.Tensor, release_coefficient: torch.Tensor
) -> torch.Tensor:
    """The peak limiter fused end to end, CPU tensors only: x (S, C, T), its required gain min(1, ceiling / peak)
    with the peak the per-sample maximum of |x| over the C channels (C = 1: unlinked), ``ceiling`` (S,) an
    amplitude, then :func:`limiter_gain`'s ramp and release. Returns y = x g (S, C, T), equal to that
    composition's; differentiable in x, the ceiling and the coefficient."""
    if bool((lookahead_samples < 1).any()):
        raise ValueError("limiter lookahead must be at least 1 sample")
    record = records_gradient(x, ceiling, release_coefficient)
    return _PeakLimiter.apply(x, ceiling, lookahead_samples, release_coefficient, record)[0]
