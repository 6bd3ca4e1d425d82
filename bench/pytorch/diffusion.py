"""Gaussian diffusion for the twins, transcribed from the reference implementations (not from
Loom): the schedule tables of openai/guided-diffusion's `GaussianDiffusion.__init__` (NumPy
float64), q_sample and the epsilon-MSE training loss, guided-diffusion's `p_sample` (DDPM,
"fixed small" variance, respaced as its `SpacedDiffusion`) and `ddim_sample` (eta), diffusers'
`DPMSolverMultistepScheduler` (DPM-Solver++ 2M, "midpoint") and diffusers' "trailing" timestep
spacing, and classifier-free guidance as in DiT's `forward_with_cfg`.
"""
import math

import numpy as np
import torch


class Schedule:
    """guided-diffusion's tables for linear betas (scaled by 1000/T, as its get_named_beta_schedule)."""

    def __init__(self, timesteps=1000, beta_start=1e-4, beta_end=0.02):
        scale = 1000 / timesteps
        betas = np.linspace(scale * beta_start, scale * beta_end, timesteps, dtype=np.float64)
        self.T = timesteps
        self.betas = betas
        alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(alphas, axis=0)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_log_variance_clipped = np.log(np.append(self.posterior_variance[1], self.posterior_variance[1:]))
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)

    TABLES = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
              "sqrt_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
              "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2")

    def abar(self, t):
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    def trailing(self, steps):
        """diffusers' timestep_spacing="trailing": round(arange(T, 0, -T/steps)) - 1."""
        return (np.round(np.arange(self.T, 0, -self.T / steps)).astype(np.int64) - 1).tolist()


def timestep_features(t, dim, max_period=10000):
    """[N, dim]: cos(t f_i), then sin(t f_i), f_i = max_period^(-i/half), in float64 (the order of
    guided-diffusion's and DiT's timestep embeddings; Loom's too)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float64) / half)
    args = t[:, None].to(torch.float64) * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def benchmark_step(ctx, model, lr, classes=0, label_dropout=0.1):
    """W1's and W2's training step as `loom bench train` runs it, for the harness: labels 0, 1, …
    cycling (conditional models) with label dropout to the null class, t ~ U{0..T−1}, ε ~ N(0, I),
    the ε-MSE, AdamW (weight decay 0), EMA 0.9999 (lerp). Returns the step function."""
    import copy
    model = model.to(memory_format=ctx.memory_format)
    ema = copy.deepcopy(model).requires_grad_(False)
    run = ctx.ddp(model)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    s = Schedule()
    x0 = ctx.images(1, 32)
    B = ctx.batch
    labels = torch.arange(B) % classes if classes > 0 else None
    params, shadows = list(model.parameters()), list(ema.parameters())

    def step():
        y = None
        if labels is not None:
            y = torch.where(torch.rand(B) < label_dropout, torch.full_like(labels, classes), labels)
        t = torch.randint(0, s.T, (B,))
        noise = torch.randn_like(x0)
        loss, _ = training_loss(s, run, x0, t, noise, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(shadows, params, 1 - 0.9999)
        return loss.detach()

    return step


def per_item(table, t, like):
    """table[t] as a [N, 1, 1, 1] tensor of `like`'s dtype."""
    return torch.as_tensor(np.asarray(table)[np.asarray(t)], dtype=like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def q_sample(s, x0, t, noise):
    return per_item(s.sqrt_alphas_cumprod, t, x0) * x0 + per_item(s.sqrt_one_minus_alphas_cumprod, t, x0) * noise


def training_loss(s, model, x0, t, noise, labels=None):
    """The epsilon-prediction "simple" loss: mean over every element of (model(x_t) - noise)²."""
    xt = q_sample(s, x0, t, noise)
    out = model(xt, t, labels) if labels is not None else model(xt, t)
    return ((out - noise) ** 2).mean(), out


# ----------------------------------------------------------------------------- sampling

def guided(model, x, t, labels, scale, null_class):
    """The network output with classifier-free guidance (DiT's forward_with_cfg: one batch of
    2N, conditional then null labels; uncond + s·(cond − uncond))."""
    tt = torch.full((x.shape[0],), t, dtype=torch.long)
    if labels is None or scale == 1:
        return model(x, tt, labels) if labels is not None else model(x, tt)
    both = model(torch.cat([x, x]), torch.cat([tt, tt]),
                 torch.cat([labels, torch.full_like(labels, null_class)]))
    cond, uncond = both.chunk(2)
    return uncond + scale * (cond - uncond)


def denoise(s, model, x, t, labels=None, scale=1.0, null_class=None, clip=True):
    """guided-diffusion's p_mean_variance for ε-prediction: x0 = √(1/ᾱ) x − √(1/ᾱ − 1) ε,
    clipped to [−1, 1] (clip_denoised), and ε re-derived from the clipped x0 (as its
    ddim_sample's _predict_eps_from_xstart)."""
    eps = guided(model, x, t, labels, scale, null_class)
    ab = s.alphas_cumprod[t]
    x0 = math.sqrt(1 / ab) * x - math.sqrt(1 / ab - 1) * eps
    if clip:
        x0 = x0.clamp(-1, 1)
        eps = (math.sqrt(1 / ab) * x - x0) / math.sqrt(1 / ab - 1)
    return x0, eps


def ddpm_step(s, model, x, t, t_prev, noise, **kw):
    """guided-diffusion's p_sample on the (re)spaced chain t -> t_prev: posterior mean of
    q(x_prev | x_t, x0) plus √(posterior variance)·noise (none when t_prev = -1). With a
    respaced chain the betas are 1 − ᾱ_t/ᾱ_prev (SpacedDiffusion)."""
    x0, _ = denoise(s, model, x, t, **kw)
    ab, ab_prev = s.abar(t), s.abar(t_prev)
    beta = 1 - ab / ab_prev
    coef1 = beta * math.sqrt(ab_prev) / (1 - ab)
    coef2 = (1 - ab_prev) * math.sqrt(1 - beta) / (1 - ab)
    mean = coef1 * x0 + coef2 * x
    if t_prev < 0:
        return mean
    return mean + math.sqrt(beta * (1 - ab_prev) / (1 - ab)) * noise


def ddim_step(s, model, x, t, t_prev, eta, noise, **kw):
    """guided-diffusion's ddim_sample (Song et al. eq. 12)."""
    x0, eps = denoise(s, model, x, t, **kw)
    ab, ab_prev = s.abar(t), s.abar(t_prev)
    sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab)) * math.sqrt(1 - ab / ab_prev)
    out = math.sqrt(ab_prev) * x0 + math.sqrt(max(0.0, 1 - ab_prev - sigma ** 2)) * eps
    return out + sigma * noise if sigma > 0 else out


def dpm_solver_step(s, model, x, t, t_next, history, **kw):
    """diffusers' DPMSolverMultistepScheduler, algorithm_type "dpmsolver++", solver_order 2,
    solver_type "midpoint": first order without history, else the 2M update. Returns
    (x_next, (x0, t)) for the next step's history; t_next = -1 (σ = 0) returns x0."""
    x0, _ = denoise(s, model, x, t, **kw)
    if t_next < 0:
        return x0, (x0, t)

    def alpha_sigma_lambda(step):
        ab = s.alphas_cumprod[step]
        a, sg = math.sqrt(ab), math.sqrt(1 - ab)
        return a, sg, math.log(a) - math.log(sg)
    a_t, s_t, l_t = alpha_sigma_lambda(t)
    a_n, s_n, l_n = alpha_sigma_lambda(t_next)
    h = l_n - l_t
    if history is None:
        out = (s_n / s_t) * x - a_n * (math.exp(-h) - 1.0) * x0
    else:
        x0_prev, t_prev = history
        _, _, l_p = alpha_sigma_lambda(t_prev)
        r0 = (l_t - l_p) / h
        d0, d1 = x0, (1.0 / r0) * (x0 - x0_prev)
        out = (s_n / s_t) * x - a_n * (math.exp(-h) - 1.0) * d0 - 0.5 * a_n * (math.exp(-h) - 1.0) * d1
    return out, (x0, t)
