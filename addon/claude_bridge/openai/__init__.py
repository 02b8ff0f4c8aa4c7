"""Pydantic models of the OpenAI wire format, named as the API names them."""
