"""zennit 1.0.0 (PyTorch, CPU) on the suite's VGG-style case; run by ``benchmarks/suite.py``
with the zennit environment's python::

    $KERAS_DTD_ZENNIT_PYTHON benchmarks/peers/zennit_vgg.py --case case.npz --out maps.npz --repeats 9

``case.npz`` (written by keras_dtd's side of the suite) holds the layer list, the weights
(Keras layouts), the inputs (NHWC) and keras_dtd's logits. The torch model takes NCHW inputs;
Conv2D kernels go (kh, kw, in, out) → (out, in, kh, kw), Dense kernels (in, out) → (out, in),
and the activations are permuted to NHWC before Flatten, so the Dense after it sees Keras'
order. Times, interleaved (the order rotates every round), for the top output (one-hot × logit):
the plain torch autograd gradient, ε (1e-7) on every layer, the ``EpsilonPlus`` composite (ε on
Linear, z⁺ on convolutions), ``ZPlus`` on every layer and ``ZBox(0, 1)`` on the first layer with
``ZPlus`` above (DTD's choice). Each method has its own copy of the model with its composite
registered once. Saves the maps (NHWC) to ``--out`` and prints one JSON line.
"""

import argparse
import copy
import importlib.metadata
import json
import resource
import statistics
import sys
import time
import types
from collections import OrderedDict

import numpy as np
import torch


def import_zennit():
    """torchvision 0.28.0 from the index is a CUDA build whose C ops do not load next to the CPU
    torch; zennit needs none of them, so stub its meta registrations (as tests/fixtures/make_zennit.py)."""
    try:
        import torchvision  # noqa: F401
    except RuntimeError:
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
        import torchvision  # noqa: F401
    import zennit.attribution
    import zennit.composites
    import zennit.rules
    import zennit.types

    return zennit


zennit = import_zennit()
from zennit.attribution import Gradient  # noqa: E402
from zennit.composites import EpsilonPlus, LayerMapComposite, SpecialFirstLayerMapComposite, layer_map_base  # noqa: E402
from zennit.rules import Epsilon, ZBox, ZPlus  # noqa: E402
from zennit.types import Linear  # noqa: E402


class ChannelsLast(torch.nn.Module):
    def forward(self, x):
        return x.permute(0, 2, 3, 1)


def build(layers, weights, in_channels):
    modules = []
    channels = in_channels
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    for spec in layers:
        kind, name = spec["type"], spec["name"]
        if kind == "Conv2D":
            kh, kw = spec["kernel_size"]
            assert spec["strides"] == [1, 1] and spec["padding"] in ("same", "valid") and kh % 2 == 1
            pad = kh // 2 if spec["padding"] == "same" else 0
            conv = torch.nn.Conv2d(channels, spec["filters"], (kh, kw), padding=pad)
            with torch.no_grad():
                conv.weight.copy_(t(weights[f"{name}/kernel"].transpose(3, 2, 0, 1)))
                conv.bias.copy_(t(weights[f"{name}/bias"]))
            modules.append((name, conv))
            channels = spec["filters"]
        elif kind == "MaxPooling2D":
            assert spec["padding"] == "valid"
            modules.append((name, torch.nn.MaxPool2d(spec["pool_size"], spec["strides"])))
        elif kind == "Flatten":
            modules += [(name + "_nhwc", ChannelsLast()), (name, torch.nn.Flatten())]
        elif kind == "Dense":
            kernel = weights[f"{name}/kernel"]
            dense = torch.nn.Linear(kernel.shape[0], kernel.shape[1])
            with torch.no_grad():
                dense.weight.copy_(t(kernel.T))
                dense.bias.copy_(t(weights[f"{name}/bias"]))
            modules.append((name, dense))
        else:
            raise TypeError(f"no mapping for {kind}")
        activation = spec.get("activation")
        if activation == "relu":
            modules.append((name + "_relu", torch.nn.ReLU()))
        elif activation not in (None, "linear"):
            raise TypeError(f"no mapping for activation {activation}")
    return torch.nn.Sequential(OrderedDict(modules)).eval()


def top_one_hot(out):
    return out * torch.nn.functional.one_hot(out.argmax(dim=1), out.shape[1]).to(out.dtype)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()

    case = np.load(args.case)
    x_nhwc = case["x"]
    model = build(json.loads(str(case["layers"])), case, x_nhwc.shape[-1])
    x = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        logits = model(x).numpy()

    composites = {  # label: (description, composite factory); None = plain autograd gradient
        "gradient": ("torch autograd gradient", None),
        "LRP-ε": (
            "Epsilon(1e-7) on every layer",
            lambda: LayerMapComposite(layer_map=layer_map_base() + [(Linear, Epsilon(epsilon=1e-7))]),
        ),
        "EpsilonPlus": ("EpsilonPlus (ε 1e-6 on Linear, z⁺ on conv)", lambda: EpsilonPlus()),
        "ZPlus": (
            "ZPlus on every layer",
            lambda: LayerMapComposite(layer_map=layer_map_base() + [(Linear, ZPlus())]),
        ),
        "ZBox+ZPlus": (
            "ZBox(0, 1) first, ZPlus above (DTD)",
            lambda: SpecialFirstLayerMapComposite(
                layer_map=layer_map_base() + [(Linear, ZPlus())],
                first_map=[(Linear, ZBox(low=0.0, high=1.0))],
            ),
        ),
    }
    result = {
        "version": importlib.metadata.version("zennit"),
        "methods": {},
        "logits_max_abs_diff": float(np.abs(logits - case["logits"]).max()),
        "notes": f"torch {torch.__version__}, {torch.get_num_threads()} threads; `gradient` is plain torch "
        "autograd of the top logit; ZPlus/ZBox have zennit's default stabilizer 1e-6",
    }

    calls, maps = {}, {}
    for label, (description, make) in composites.items():
        start = time.perf_counter()
        if make is None:
            net = model

            def call(net=net):
                xg = x.clone().requires_grad_(True)
                out = net(xg)
                one_hot = torch.nn.functional.one_hot(out.argmax(dim=1), out.shape[1]).to(out.dtype)
                (grad,) = torch.autograd.grad(out, xg, grad_outputs=one_hot)  # ∂(top logit)/∂x
                return grad
        else:
            attributor = Gradient(model=copy.deepcopy(model), composite=make())
            attributor.__enter__()  # the composite stays registered on this copy

            def call(attributor=attributor):
                _, relevance = attributor(x, attr_output=top_one_hot)
                return relevance

        relevance = call()
        result["methods"][label] = {"build_s": time.perf_counter() - start, "label": description}
        maps[label] = relevance.detach().numpy().transpose(0, 2, 3, 1).astype("float32")
        calls[label] = call
    np.savez(args.out, **maps)

    names = list(calls)
    times = {n: [] for n in names}
    for r in range(args.repeats):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            start = time.perf_counter()
            calls[n]()
            times[n].append(1000 * (time.perf_counter() - start))
    for n in names:
        result["methods"][n].update(
            ms=statistics.median(times[n]),
            ratio=statistics.median(a / b for a, b in zip(times[n], times["gradient"])),
            all=times[n],
        )
    result["rss_peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
