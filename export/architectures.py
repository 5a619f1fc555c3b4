"""Model types the exporter knows besides Hugging Face's own.

A checkpoint's ``config.json`` names its ``model_type``. Hugging Face types load through
``AutoModelForTokenClassification``; the project's own architectures are listed here as ``module:Class``.
Each class has ``from_pretrained(directory)`` and ``forward(input_ids, attention_mask) -> emissions [B, L, C]``.
"""

PROJECT_ARCHITECTURES = {
    "lac_bigru_crf": "ner_model.architecture:LacBiGruCrf",
    "lac_bigru_crf_ensemble": "ner_model.ensemble:LacBiGruCrfEnsemble",
}
