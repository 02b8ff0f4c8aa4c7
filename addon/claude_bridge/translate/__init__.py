"""OpenAI requests to Claude invocations, Claude events to OpenAI objects, CLI failures to OpenAI errors."""
