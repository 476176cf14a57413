"""Manifold mixup in any nn.Module, against a hand-written manifold mixup (Verma et al. 2019) on the same plan."""

import pytest
import timm.models.vision_transformer as timm_vit
import torch
import torchvision
from conftest import fixed_plan, with_plan
from torch import nn
from torch.utils.checkpoint import checkpoint

import multimix
from multimix.manifold import ManifoldModel, wrap_module
from multimix.text import HiddenMix

C = 5


def hooks_on(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def mix(h, plan):
    lam = plan.lam.to(h.dtype).view(-1, *([1] * (h.dim() - 1)))
    return lam * h + (1 - lam) * h[plan.index]


def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=C)


def resnet_by_hand(net, x, plan, point):
    h = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    for name in ("layer1", "layer2", "layer3", "layer4"):
        h = getattr(net, name)(h)
        h = mix(h, plan) if name == point else h
    return net.fc(torch.flatten(net.avgpool(h), 1))


def vit(**kwargs):
    torch.manual_seed(0)
    return timm_vit.VisionTransformer(
        img_size=16, patch_size=4, embed_dim=32, depth=5, num_heads=2, num_classes=C, **kwargs
    ).train()


def vit_by_hand(net, x, plan, point):
    h = net.norm_pre(net.patch_drop(net._pos_embed(net.patch_embed(x))))
    for k, block in enumerate(net.blocks):
        h = block(h)
        h = mix(h, plan) if point == f"blocks.{k}" else h
    return net.forward_head(net.norm(h))


def cnn():
    torch.manual_seed(0)
    features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3), nn.ReLU())
    return CNN(features)


class CNN(nn.Module):
    def __init__(self, features):
        super().__init__()
        self.features, self.classifier = features, nn.Linear(8, C)

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


def cnn_by_hand(net, x, plan, point):
    h = x
    for k, layer in enumerate(net.features):
        h = layer(h)
        h = mix(h, plan) if point == f"features.{k}" else h
    return net.classifier(h.mean((2, 3)))


def batch(size=32, n=4):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, size, size, generator=g), torch.tensor([0, 3, 1, 4])


CASES = [
    (resnet, resnet_by_hand, 16, ["layer2", "layer3"]),
    (vit, vit_by_hand, 16, ["blocks.3"]),
    (cnn, cnn_by_hand, 12, ["features.3"]),
]


@pytest.mark.parametrize(("make", "by_hand", "size", "layers"), CASES)
@pytest.mark.parametrize("smoothing", [0.1])
def test_equals_hand_written_manifold_mixup(make, by_hand, size, layers, smoothing):
    x, y = batch(size)
    x = x.double()  # float64, so the comparison holds to rounding over a deep backward pass
    plan = fixed_plan([1, 2, 3, 0], [0.7, 0.2, 0.5, 1.0])
    for point in layers:
        reference = make().double().train()
        expected = by_hand(reference, x, plan, point)
        rows = multimix.soft_targets(y, C, label_smoothing=smoothing)
        targets = mix(rows.double(), plan).float()
        expected_loss = multimix.soft_cross_entropy(expected, targets)  # float64 logits: a float64 loss
        expected_loss.backward()
        base = make().double().train()
        model = with_plan(wrap_module(base, HiddenMix(1.0, layers=[point]), C, label_smoothing=smoothing), plan)
        out = model(x, labels=y)
        assert out.layer == point and hooks_on(multimix.unwrap(model)) == 0  # unwrap takes the hook off
        torch.testing.assert_close(out.logits, expected, atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(out.targets, targets)
        torch.testing.assert_close(out.loss, expected_loss)
        out.loss.backward()
        for (name, p), q in zip(base.named_parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-5, msg=name)  # the loss runs in fp32


@pytest.mark.parametrize(("make", "by_hand", "size", "layers"), CASES)
def test_eval_is_exactly_the_model_and_the_layer_is_drawn(make, by_hand, size, layers):
    x, y = batch(size)
    base = make().eval()
    expected = base(x)
    model = wrap_module(base, HiddenMix(1.0, layers=layers), C, seed=0).eval()
    assert torch.equal(model(x), expected) and model.base_model is base
    with_labels = model(x, labels=y)
    assert torch.equal(with_labels.logits, expected)
    torch.testing.assert_close(with_labels.loss, nn.functional.cross_entropy(expected, y))
    model.train()
    seen = {model(x, labels=y).layer for _ in range(12)}
    assert seen == set(layers)  # one point drawn per step from the mixer's generator


def test_input_point_and_multi_label_bce():
    x, _ = batch(12)
    rows = torch.tensor([[1.0, 0, 1, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 1, 1], [1, 1, 0, 0, 0]])
    plan = fixed_plan([1, 0, 3, 2], [0.6, 0.6, 0.3, 0.3])
    base = cnn().train()
    model = with_plan(wrap_module(base, HiddenMix(1.0, layers=[0]), C, multi_label=True), plan)
    out = model(x, labels=rows)
    expected = base(mix(x, plan))
    torch.testing.assert_close(out.logits, expected)
    torch.testing.assert_close(out.loss, multimix.binary_cross_entropy(expected, mix(rows, plan)))


def test_disable_mixing_and_double_wrap():
    x, _ = batch(12)
    base = cnn().train()
    model = wrap_module(base, HiddenMix(1.0, layers=["features.3"]), C, seed=0)
    with model.disable_mixing():
        assert torch.equal(model(x), base(x))
    with pytest.warns(UserWarning, match=r"already wrapped"):
        again = wrap_module(model, HiddenMix(1.0, layers=["features.3"]), C)
    assert again.base_model is base
    hooks = lambda: sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in base.modules())  # noqa: E731
    assert multimix.unwrap(again) is base and hooks() == 0  # the first wrapper's hooks went with it
    model(x, labels=torch.arange(4) % C)  # the first wrapper hooks again when it trains again
    assert hooks() == 1


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    x, y = batch(16)
    plan = fixed_plan([1, 2, 3, 0], [0.7, 0.2, 0.5, 0.9])
    results = []
    for checkpointing in (False, True):
        base = vit()
        base.set_grad_checkpointing(checkpointing)
        out = with_plan(wrap_module(base, HiddenMix(1.0, layers=["blocks.3"]), C), plan)(x, labels=y)
        out.loss.backward()
        results.append((out.loss.detach(), [p.grad for p in base.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


class Reentrant(CNN):
    def forward(self, x):
        return self.classifier(checkpoint(self.features, x, use_reentrant=True).mean((2, 3)))


def test_reentrant_checkpointing_is_refused_and_leaves_no_step_behind():
    x, y = batch(12)
    base = Reentrant(cnn().features).train()
    model = wrap_module(base, HiddenMix(1.0, layers=["features.3"]), C, seed=0)
    with pytest.raises(ValueError, match=r"layers='features.3' runs without autograd .* use_reentrant=False"):
        model(x.requires_grad_(), labels=y)
    assert model._slot.step is None and hooks_on(multimix.unwrap(model)) == 0


def test_torch_compile_matches_eager_over_two_steps():
    x, y = batch(12)
    eager = wrap_module(cnn(), HiddenMix(1.0, layers=["features.0", "features.3"]), C, seed=0).train()
    compiled = torch.compile(wrap_module(cnn(), HiddenMix(1.0, layers=["features.0", "features.3"]), C, seed=0).train())
    for _ in range(3):  # a new plan (and layer) each step
        expected, got = eager(x, labels=y), compiled(x, labels=y)
        torch.testing.assert_close(got.loss, expected.loss, atol=1e-5, rtol=1e-5)
        assert got.layer == expected.layer
    assert hooks_on(multimix.unwrap(compiled._orig_mod)) == 0


def test_no_host_device_sync_on_meta():
    with torch.device("meta"):
        base = torchvision.models.resnet18(num_classes=C)
    model = wrap_module(base, HiddenMix(1.0, layers=["layer2", "layer3"]), C, seed=0).train()
    out = model(torch.empty(4, 3, 32, 32, device="meta"), labels=torch.zeros(4, dtype=torch.long, device="meta"))
    assert out.loss.device.type == "meta" and out.targets.shape == (4, C)
    out.loss.backward()
    assert hooks_on(multimix.unwrap(model)) == 0


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: wrap_module(cnn(), HiddenMix(1.0, layers=["layer9"]), C), ValueError,
         r"layers holds 'layer9', which is not a submodule of CNN; .*children: \['features', 'classifier'\]"),
        (lambda: wrap_module(cnn(), HiddenMix(1.0, layers=[3]), C), ValueError, r"layers holds 3, which is not a"),
        (lambda: wrap_module(cnn(), HiddenMix(1.0), C), ValueError, r"HiddenMix\(layers=None\) picks HF encoder"),
        (lambda: wrap_module(cnn(), multimix.image.Mixup(1.0), C), TypeError, r"adapter must be HiddenMix"),
        (lambda: ManifoldModel("net", HiddenMix(1.0, layers=[0]), C), TypeError, r"model must be a torch.nn.Module"),
        (lambda: HiddenMix(1.0, layers=["layer 2"]), ValueError, r"submodule paths such as .*got 'layer 2'"),
        (lambda: HiddenMix(1.0, layers=["a"]).resolve_layers(4, "Bert"), ValueError,
         r"layers holds the submodule path 'a', but Bert is mixed by encoder layer number"),
        (lambda: wrap_module(cnn(), HiddenMix(1.0, layers=[0]), C).train()(batch(12)[0]), ValueError,
         r"labels are required in train mode"),
        (lambda: wrap_module(cnn(), HiddenMix(1.0, layers=["features.2"]), C).train()(*batch(12)[:1],
                                                                                      labels=torch.arange(3)),
         ValueError, r"targets has batch size 3 but inputs have batch size 4"),
        (lambda: wrap_module(nn.Sequential(nn.Flatten(0, 1)), HiddenMix(1.0, layers=["0"]), C).train()(
            batch(12)[0][:1], labels=torch.arange(1)),
         ValueError, r"layers='0' returns shape \(3, 12, 12\), whose first axis is not the batch \(1\)"),
    ],
)  # fmt: skip
def test_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_multimix_wrap_and_unwrap_take_any_module():
    model = torchvision.models.resnet18(num_classes=4)
    wrapped = multimix.wrap(model, HiddenMix(1.0, layers=["layer2", "layer3"]), num_classes=4, seed=0)
    assert isinstance(wrapped, ManifoldModel) and multimix.unwrap(wrapped) is model
    out = wrapped.train()(torch.rand(4, 3, 32, 32), labels=torch.tensor([0, 1, 2, 3]))
    torch.testing.assert_close(out.loss, multimix.soft_cross_entropy(out.logits, out.targets))


def test_bf16_hidden_states_label_the_lam_the_blend_applied():
    """In bfloat16 the blend rounds 1 - lam to the hidden state's dtype: targets and out.lam follow the rounded one."""
    x, y = batch(12)
    plan = fixed_plan([1, 2, 3, 0], [0.7, 0.2, 0.55, 0.9])
    base = cnn().bfloat16().train()
    model = with_plan(wrap_module(base, HiddenMix(1.0, layers=["features.3"]), C), plan)
    out = model(x.bfloat16(), labels=y)
    applied = 1.0 - (1.0 - plan.lam).to(torch.bfloat16).double()
    assert (applied - plan.lam).abs().max() > 1e-4  # the drawn lam would be off by this much
    torch.testing.assert_close(out.lam, applied, rtol=0, atol=0)
    expected = multimix.mix_targets(torch.eye(C)[y], plan.index, applied)
    torch.testing.assert_close(out.targets, expected, rtol=0, atol=1e-7)


def test_a_layer_the_forward_never_runs_is_refused_instead_of_mixing_only_the_labels():
    """A named submodule that the forward skips mixes nothing: mixing the labels alone would train on wrong targets."""

    class Skips(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.unused, self.head = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, C)

        def forward(self, x):
            return self.head(self.body(x))

    model = wrap_module(Skips(), HiddenMix(1.0, layers=["unused"]), C, seed=0).train()
    with pytest.raises(ValueError, match=r"layers holds 'unused', a submodule Skips.forward did not run"):
        model(torch.randn(6, 4), labels=torch.arange(6) % C)
    assert model._slot.step is None  # no step left behind
    body = wrap_module(Skips(), HiddenMix(1.0, layers=["body"]), C, seed=0).train()
    out = body(torch.randn(6, 4), labels=torch.arange(6) % C)
    assert out.layer == "body" and out.lam.shape == (6,)


def test_the_wrapper_starts_in_the_models_mode():
    """A module starts in train mode; the wrapper of a model in eval mode starts in eval (it mixed with dropout
    off, and refused calls without labels)."""
    net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3)).eval()
    model = multimix.wrap(net, HiddenMix(1.0, layers=["1"]), num_classes=3, seed=0)
    assert not model.training
    x = torch.randn(2, 4)
    assert torch.equal(model(x), net(x))
    assert model.train().training and net.training and net[1].training


def test_a_mixing_point_the_forward_calls_twice_is_refused():
    """A shared activation runs twice per forward: mixing both outputs would blend three samples under two-sample
    labels."""

    class Reuses(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c, self.act = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 3), nn.ReLU()

        def forward(self, x):
            return self.c(self.act(self.b(self.act(self.a(x)))))

    net = Reuses()
    model = multimix.wrap(net, HiddenMix(1.0, layers=["act"]), num_classes=3, seed=0).train()
    with pytest.raises(ValueError, match=r"layers='act' ran twice in one forward .*name a submodule the forward calls"):
        model(torch.randn(4, 4), labels=torch.tensor([0, 1, 2, 0]))
    once = multimix.wrap(multimix.unwrap(model), HiddenMix(1.0, layers=["b"]), num_classes=3, seed=0).train()
    assert torch.isfinite(once(torch.randn(4, 4), labels=torch.tensor([0, 1, 2, 0])).loss)
