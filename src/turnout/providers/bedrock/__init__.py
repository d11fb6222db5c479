"""Amazon Bedrock's Converse API (`/model/{modelId}/converse` and `/converse-stream`), behind
OpenAI's chat format. Imports botocore (SigV4, event-stream decoding): the registry imports this
package only when a Bedrock provider is configured."""
