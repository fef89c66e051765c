"""Peer benchmark: LXT 2.1 (PyTorch, rachtibat/LRP-eXplains-Transformers) AttnLRP on a Hugging Face BERT
of the size of our KerasHub benchmark, against a plain gradient of the same model, in one process.

Model: transformers.BertForSequenceClassification(BertConfig(...)) with random weights (seed 0, no
download): vocabulary 30522 (BERT's own), 4 layers, hidden size 256, 4 heads, intermediate size 1024,
2 labels; SDPA attention (the transformers default), eval mode, float32, CPU, torch.set_num_threads(2);
batch 8 of 128 random tokens with an all-ones attention mask; parameters frozen (requires_grad=False).
One call embeds the tokens (model.bert.embeddings.word_embeddings), makes the embeddings a leaf that
requires grad, runs the model on inputs_embeds=, and back-propagates the sum over the batch of each
sample's top logit; the gradient call returns inputs_embeds.grad, the LXT calls return
(inputs_embeds * inputs_embeds.grad).sum(-1).

LXT's efficient mode patches globally: monkey_patch(modeling_bert, lxt.efficient.models.bert.attnLRP)
rewrites torch.nn.LayerNorm.forward and torch.nn.Dropout.forward for every model and replaces the classes
of transformers.models.bert.modeling_bert, so only models built afterwards from modeling_bert get the
LXT attention/activation rules. Hence the gradient is timed first on an unpatched model, then the module
is patched and a second model is built from modeling_bert and given the same weights. Calls cannot be
interleaved. CP-LRP would run in a fresh subprocess (--worker cp_LRP), but lxt 2.1 ships no cp_LRP map
for BERT (only attnLRP), so that row is reported as unavailable.

Each method: build (model construction, plus patching for LXT), the first call, then 2 more warm-up calls
and --repeats timed calls; medians and the ratio to the gradient's median are printed.

This runs outside the repository's environment (it needs torch, transformers 4.52 and lxt 2.1):

    /work/fixture-envs/lxt/bin/python benchmarks/lxt_bert.py [--repeats 15] [--json out.json]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from importlib.metadata import version

import torch
import transformers
from lxt.efficient import monkey_patch
from lxt.efficient.models import bert as lxt_bert
from transformers.models.bert import modeling_bert

CONFIG = dict(
    vocab_size=30522,
    hidden_size=256,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=1024,
    num_labels=2,
)
BATCH, LENGTH, WARMUP = 8, 128, 3


def build(cls, state=None):
    torch.manual_seed(0)
    model = cls(transformers.BertConfig(**CONFIG)).eval()
    if state is not None:
        model.load_state_dict(state)
    model.requires_grad_(False)
    return model


def call(model, ids, mask, relevance):
    x = model.bert.embeddings.word_embeddings(ids).detach().requires_grad_(True)
    logits = model(inputs_embeds=x, attention_mask=mask).logits
    logits.gather(1, logits.argmax(-1, keepdim=True)).sum().backward()
    return (x * x.grad).sum(-1) if relevance else x.grad


def timed(model, ids, mask, relevance, repeats):
    times = []
    for _ in range(WARMUP + repeats):
        start = time.perf_counter()
        out = call(model, ids, mask, relevance)
        times.append(time.perf_counter() - start)
    return {
        "first_call_s": times[0],
        "median_ms": 1e3 * statistics.median(times[WARMUP:]),
        "times_ms": [1e3 * t for t in times[WARMUP:]],
    }, out


def measure(map_name, repeats):
    """The gradient on an unpatched model, then LXT with lxt.efficient.models.bert.<map_name>."""
    torch.set_num_threads(2)
    ids = torch.randint(0, CONFIG["vocab_size"], (BATCH, LENGTH), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    start = time.perf_counter()
    plain = build(transformers.BertForSequenceClassification)
    gradient = {"build_s": time.perf_counter() - start}
    stats, _ = timed(plain, ids, mask, False, repeats)
    gradient.update(stats)

    start = time.perf_counter()
    monkey_patch(modeling_bert, getattr(lxt_bert, map_name), verbose=False)
    model = build(modeling_bert.BertForSequenceClassification, plain.state_dict())
    method = {"build_s": time.perf_counter() - start}
    patched = type(model.bert.encoder.layer[0].attention.self)
    assert patched.__module__ == lxt_bert.__name__, f"{patched} was not replaced by LXT"
    stats, relevance = timed(model, ids, mask, True, repeats)
    method.update(stats)
    with torch.no_grad():
        top = model(input_ids=ids, attention_mask=mask).logits.max(-1).values
    method["relevance_sum_over_logit"] = (relevance.sum(-1) / top).tolist()
    method["attention_class"] = f"{patched.__module__}.{patched.__name__}"
    for entry in (gradient, method):
        entry["ratio"] = entry["median_ms"] / gradient["median_ms"]
    return {"gradient": gradient, map_name: method}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", help="also write the numbers to this path")
    parser.add_argument("--worker", help="internal: measure this LXT map in this fresh process, print JSON")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args.repeats)))
        return
    versions = {name: version(name) for name in ("torch", "transformers", "lxt")}
    print(*(f"{k} {v}" for k, v in versions.items()), f"CPU x{os.cpu_count()}, 2 threads", sep=", ")
    print(f"BERT {CONFIG}, batch {BATCH}, length {LENGTH}, repeats {args.repeats}\n")
    results = dict(versions=versions, config=CONFIG, batch=BATCH, length=LENGTH, repeats=args.repeats)
    results.update(measure("attnLRP", args.repeats))
    if hasattr(lxt_bert, "cp_LRP"):  # patching is global, so CP-LRP gets a fresh interpreter
        command = [sys.executable, __file__, "--worker", "cp_LRP", "--repeats", str(args.repeats)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        worker = json.loads(out.strip().splitlines()[-1])
        results["cp_LRP"] = worker["cp_LRP"] | {"gradient_in_its_process": worker["gradient"]}
    else:
        results["cp_LRP"] = None
    print(f"| method | build s | first call s | ms/call (median) | ratio to gradient |\n{'|---' * 5}|")
    for name, label in (("gradient", "gradient"), ("attnLRP", "LXT AttnLRP"), ("cp_LRP", "LXT CP-LRP")):
        r = results[name]
        if r is None:
            print(f"| {label} | n/a: lxt {versions['lxt']} has no cp_LRP map for BERT | | | |")
            continue
        cells = f"{r['build_s']:.3f} | {r['first_call_s']:.3f} | {r['median_ms']:.1f} | {r['ratio']:.2f}"
        print(f"| {label} | {cells} |")
    ratios = results["attnLRP"]["relevance_sum_over_logit"]
    print(f"\nAttnLRP relevance sum / top logit per sample: {', '.join(f'{q:.3f}' for q in ratios)}")
    print(f"LXT attention class: {results['attnLRP']['attention_class']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
