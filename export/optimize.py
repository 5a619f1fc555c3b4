"""ONNX Runtime's transformer fusions on a BERT-family FP32 encoder graph, before quantization.

The exported graph spells attention, the residual LayerNorms and GELU out in many small operators; ONNX Runtime's
transformer optimizer (``onnxruntime.transformers.optimizer``, model type ``bert``) replaces them with its contrib
kernels (domain ``com.microsoft``): MultiHeadAttention, SkipLayerNormalization (with the bias Add before it) and
BiasGelu. The choices, and why:

- attention as MultiHeadAttention, not Attention: Attention holds the Q, K and V weights inside itself, which static
  INT8 (QDQ) cannot quantize; MultiHeadAttention takes Q, K and V from three ordinary MatMuls, which stay weight GEMMs
  that quantize as before, while the activation products (scores, softmax, context) run fused, in FP32, as
  ``export.quantize`` keeps them anyway.
- the raw 2-D attention mask, not ONNX Runtime's mask index for BERT, which assumes every row padded on the right:
  a caller of the encoder may send any mask.
- no EmbedLayerNormalization: QDQ has no such operator, so the embedding tables (a third of BERT-base's weights) would
  stay FP32 in static INT8, and the served encoder reads its vocabulary size from the embedding Gather
  (``ner_pipeline.validation.embedding_rows``).

Only BERT-family encoders (``BERT_FAMILY``) are fused; other models, and an export for Triton's native ONNX Runtime
backend (ONNX Runtime 1.19, default-domain operators only: ``export/native.py``), keep the unfused graph.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

# Hugging Face model types whose encoder is BERT's (embeddings, post-LN layers of self-attention and a GELU FFN).
BERT_FAMILY = frozenset({"bert", "roberta", "xlm-roberta", "electra", "camembert"})
FUSIONS = ("attention", "skip_layer_norm", "bias_gelu")
CONTRIB_DOMAIN = "com.microsoft"


@dataclass(frozen=True)
class GraphOptimizationConfig:
    enabled: bool = True
    fusions: tuple[str, ...] = FUSIONS
    model_type: str = "bert"  # the optimizer's model type
    # From the checkpoint's config (``for_model``); 0: not a BERT-family encoder.
    num_heads: int = 0
    hidden_size: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.fusions) - set(FUSIONS)
        if unknown:
            raise ValueError(f"fusions must be among {FUSIONS}, not {sorted(unknown)}")


def encoder_config(model):
    """The Hugging Face config of the checkpoint's transformer encoder, or None (e.g. the LAC BiGRU)."""
    for module in model.modules():
        config = getattr(module, "config", None)
        if getattr(config, "num_attention_heads", None) and getattr(config, "hidden_size", None):
            return config
    return None


def for_model(cfg: GraphOptimizationConfig, model, encoder_backend: str) -> tuple[GraphOptimizationConfig, str]:
    """``cfg`` with the encoder's heads and width when its graph is to be fused (``num_heads`` > 0), and why not
    otherwise (empty when it is)."""
    if not cfg.enabled:
        return cfg, "turned off (--no-fuse)"
    if encoder_backend != "python":
        return replace(cfg, enabled=False), ("Triton's native ONNX Runtime backend (ONNX Runtime 1.19) gets the "
                                             "unfused graph: export/native.py admits default-domain operators only")
    config = encoder_config(model)
    if config is None or config.model_type not in BERT_FAMILY:
        kind = config.model_type if config is not None else type(model).__name__
        return replace(cfg, enabled=False), f"{kind} is not a BERT-family encoder ({', '.join(sorted(BERT_FAMILY))})"
    return replace(cfg, num_heads=config.num_attention_heads, hidden_size=config.hidden_size), ""


def fuse_fp32(source: Path, output: Path, cfg: GraphOptimizationConfig) -> dict[str, int]:
    """Writes the fused graph to ``output``; returns how many of each contrib operator it holds."""
    import onnx
    from onnxruntime.transformers.fusion_options import AttentionMaskFormat, FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions(cfg.model_type)
    options.enable_attention = "attention" in cfg.fusions
    options.use_multi_head_attention = True
    options.attention_mask_format = AttentionMaskFormat.AttentionMask
    options.enable_skip_layer_norm = options.enable_bias_skip_layer_norm = "skip_layer_norm" in cfg.fusions
    options.enable_gelu = options.enable_bias_gelu = "bias_gelu" in cfg.fusions
    options.enable_embed_layer_norm = False
    model = without_identity_slices(onnx.load(str(source)))
    # The optimizer logs each pattern it did not find as a warning; what it did fuse is counted below and the fused
    # graph's parity with PyTorch is checked by the export, so its log would only repeat that.
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        # opt_level 0: the optimizer's own pattern fusions only, no ONNX Runtime session optimisation, whose saved
        # graph would hold kernels of this ONNX Runtime build (and the serving session applies those at load anyway).
        fused = optimize_model(model, model_type=cfg.model_type, num_heads=cfg.num_heads,
                               hidden_size=cfg.hidden_size, optimization_options=options, opt_level=0)
    finally:
        logging.disable(previous)
    # The types and shapes of the contrib operators' outputs, which ONNX's own shape inference (the quantizer's) does
    # not know: without them the quantizer leaves the activations those operators feed unquantized, and each weight
    # MatMul then runs in FP32 on dequantized weights.
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    fused.topological_sort()
    fused.model = SymbolicShapeInference.infer_shapes(fused.model, auto_merge=True)
    fused.save_model_to_file(str(output))  # with the com.microsoft opset import
    return fused_operators(output)


def without_identity_slices(model):
    """``model`` without the Slices that keep their whole input. Transformers' eager attention cuts the mask to the
    key length, which in an encoder's self-attention is the whole mask; the exported Slice, between the scores' Add
    and the mask, hides the mask from every attention pattern the optimizer knows, so that nothing was fused. A Slice
    is dropped when it starts at 0 with step 1 and ONNX Runtime's symbolic shape inference gives its output the
    shape of its input, dimension by dimension (the same symbol or size)."""
    from onnx import numpy_helper
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    shapes = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input):
        dims = tuple(d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim)
        if dims and all(dims):
            shapes[value.name] = dims
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    constants.update((n.output[0], numpy_helper.to_array(n.attribute[0].t)) for n in model.graph.node
                     if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value")

    def all_equal(name: str, value: int) -> bool:
        return name in constants and bool((constants[name] == value).all())

    kept, renamed = [], {}
    for node in model.graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
        if (node.op_type == "Slice" and all_equal(node.input[1], 0)
                and (len(node.input) < 5 or not node.input[4] or all_equal(node.input[4], 1))
                and node.input[0] in shapes and shapes.get(node.output[0]) == shapes[node.input[0]]
                and node.output[0] not in {o.name for o in model.graph.output}):
            renamed[node.output[0]] = node.input[0]
            continue
        kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return model


def fused_operators(onnx_path: Path) -> dict[str, int]:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return dict(sorted(Counter(node.op_type for node in graph.node if node.domain == CONTRIB_DOMAIN).items()))
