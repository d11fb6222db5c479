"""The kinds of provider that speak OpenAI's wire format: OpenAI itself and every service that
does from its own URL, with its own authentication and its own documented gaps (Azure, Mistral,
Groq, vLLM, Ollama ...). Adding an OpenAI-compatible service is one entry here, not a new adapter.

Sources for each kind's gaps: the providers' API references and official SDKs (see the README's
provider table). Parameters a service silently ignores are renamed where it has an equivalent, so
that nothing the client asked for is lost without an error.
"""

from __future__ import annotations

from turnout.config.provider_kinds import ANY_VALUE, ProviderKind, renamed, unsupported

OPENAI_KINDS = (
    ProviderKind(
        "openai",
        "OpenAI",
        "openai",
        legacy_completions=True,  # POST /completions (the legacy API) is passed on whole
        default_base_url="https://api.openai.com/v1",
        base_url_env="OPENAI_BASE_URL",
        api_key_env="OPENAI_API_KEY",
        price_namespace="openai",
        native_inbound="responses",  # /v1/responses is passed on whole
        media_apis=True,
    ),
    ProviderKind(
        "azure",
        "Azure OpenAI",
        "openai",
        legacy_completions=True,  # POST /completions (the legacy API) is passed on whole
        base_url_env="AZURE_OPENAI_ENDPOINT",
        api_key_env="AZURE_OPENAI_API_KEY",
        auth="api-key",
        azure_paths=True,
        price_namespace="azure",
        media_apis=True,
    ),
    ProviderKind(
        "mistral",
        "Mistral",
        "openai",
        default_base_url="https://api.mistral.ai/v1",
        api_key_env="MISTRAL_API_KEY",
        renamed_params=renamed(seed="random_seed", max_completion_tokens="max_tokens"),
        renamed_embedding_params=renamed(dimensions="output_dimension"),
        unsupported_params=unsupported(
            logprobs=(False,),
            top_logprobs=(),
            logit_bias=(),
            user=(ANY_VALUE,),
            safety_identifier=(ANY_VALUE,),
            store=(False,),
            service_tier=("auto", "default"),
            modalities=(["text"],),
        ),
        stream_usage=False,
        continuation="prefix",
        price_namespace="mistral",
    ),
    ProviderKind(
        "deepseek",
        "DeepSeek",
        "openai",
        default_base_url="https://api.deepseek.com/v1",
        api_key_env="DEEPSEEK_API_KEY",
        renamed_params=renamed(max_completion_tokens="max_tokens"),
        unsupported_params=unsupported(n=(1,), logit_bias=()),
        embeddings=False,
        json_schema=False,
        price_namespace="deepseek",
    ),
    ProviderKind(
        "groq",
        "Groq",
        "openai",
        default_base_url="https://api.groq.com/openai/v1",
        api_key_env="GROQ_API_KEY",
        unsupported_params=unsupported(
            logprobs=(False,),
            top_logprobs=(),
            logit_bias=(),
            n=(1,),
            metadata=(),
            store=(False,),
        ),
        embeddings_base64=True,
    ),
    ProviderKind(
        "together",
        "Together AI",
        "openai",
        legacy_completions=True,  # POST /completions (the legacy API) is passed on whole
        default_base_url="https://api.together.ai/v1",
        api_key_env="TOGETHER_API_KEY",
        renamed_params=renamed(max_completion_tokens="max_tokens"),
        # Together's `logprobs` is a count, not OpenAI's boolean: refuse rather than misread it.
        unsupported_params=unsupported(
            logprobs=(False,),
            top_logprobs=(),
            user=(ANY_VALUE,),
            parallel_tool_calls=(True,),
        ),
        stream_usage=False,
        embeddings_base64=False,
    ),
    ProviderKind(
        "openrouter",
        "OpenRouter",
        "openai",
        legacy_completions=True,  # POST /completions (the legacy API) is passed on whole
        default_base_url="https://openrouter.ai/api/v1",
        api_key_env="OPENROUTER_API_KEY",
    ),
    ProviderKind(
        "vllm",
        "vLLM",
        "openai",
        legacy_completions=True,  # POST /completions (the legacy API) is passed on whole
        base_url_env="VLLM_BASE_URL",
        api_key_env="VLLM_API_KEY",
        key_required=False,
        continuation="continue_final_message",
    ),
    ProviderKind(
        "ollama",
        "Ollama",
        "openai",
        legacy_completions=True,  # POST /completions (the legacy API) is passed on whole
        default_base_url="http://127.0.0.1:11434/v1",
        base_url_env="OLLAMA_BASE_URL",
        key_required=False,
        auth="none",
        # Ollama ignores max_completion_tokens silently; its max_tokens does the same job.
        renamed_params=renamed(max_completion_tokens="max_tokens"),
        unsupported_params=unsupported(tool_choice=("auto",), logit_bias=(), user=(ANY_VALUE,), n=(1,)),
    ),
    ProviderKind(
        "llamacpp",
        "llama.cpp server",
        "openai",
        legacy_completions=True,  # POST /completions (the legacy API) is passed on whole
        default_base_url="http://127.0.0.1:8080/v1",
        base_url_env="LLAMACPP_BASE_URL",
        api_key_env="LLAMACPP_API_KEY",
        key_required=False,
        embeddings_base64=False,
    ),
    ProviderKind(
        "openai_compatible",
        "any OpenAI-compatible server",
        "openai",
        legacy_completions=True,  # POST /completions (the legacy API) is passed on whole
        key_required=False,
        media_apis=True,
    ),
)
