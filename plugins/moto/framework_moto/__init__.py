"""MOTO: model-based offline pre-training to online fine-tuning."""
