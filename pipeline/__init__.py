"""Chargeback for Azure OpenAI traffic through Azure API Management."""
