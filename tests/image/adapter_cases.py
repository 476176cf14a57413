"""What the image adapter tests share: a fixed plan, small image batches, one draw and apply."""

import torch
from conftest import fixed_plan

PLAN = fixed_plan([1, 2, 0, 4, 3, 5], [0.3, 0.6, 0.9, 0.1, 0.5, 1.0])  # sample 5 is unmixed


def images(n=6, h=16, w=20, seed=0):
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def run(adapter, x, plan=PLAN, seed=0):
    region = adapter.draw_region(x, plan, torch.Generator().manual_seed(seed))
    out, lam = adapter.apply(x.clone(), plan, region)
    return out, lam, region
