// The Vercel AI SDK against turnout, for tests/test_agent_clients.py: one generateText call with a
// tool, through the SDK's OpenAI provider (its default: the Responses API) or its Anthropic
// provider, stopping after at most three steps. Prints the final text on stdout.
//   node ai_sdk.mjs <openai|anthropic> <base url ending in /v1> <model>   (key in TURNOUT_KEY)
import { generateText, jsonSchema, stepCountIs, tool } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { createAnthropic } from "@ai-sdk/anthropic";

const [provider, baseURL, model] = process.argv.slice(2);
const apiKey = process.env.TURNOUT_KEY;
const make = provider === "anthropic" ? createAnthropic({ baseURL, apiKey }) : createOpenAI({ baseURL, apiKey });

const result = await generateText({
  model: make(model),
  prompt: "What is the weather in Lisbon?",
  maxRetries: 0,
  stopWhen: stepCountIs(3),
  tools: {
    get_weather: tool({
      description: "The weather at a place",
      inputSchema: jsonSchema({
        type: "object",
        properties: { city: { type: "string" } },
        required: ["city"],
        additionalProperties: false,
      }),
      execute: async ({ city }) => `sunny in ${city}`,
    }),
  },
});
console.log(result.text);
