// Renders every conversation in conversations.json with every model's chat template through
// transformers.js (Hugging Face's JavaScript port of `apply_chat_template`) and writes expected.json.
// Run once, outside the repository (see README.md in this folder):
//   npm install @huggingface/transformers@4.3.2
//   node make_expected.mjs <dir with one folder per model holding tokenizer.json + tokenizer_config.json>
import { AutoTokenizer, env } from '@huggingface/transformers';
import fs from 'node:fs';
import path from 'node:path';

const here = path.dirname(new URL(import.meta.url).pathname);
const modelRoot = process.argv[2];
env.localModelPath = modelRoot.endsWith('/') ? modelRoot : modelRoot + '/';
env.allowRemoteModels = false;

const conversations = JSON.parse(fs.readFileSync(path.join(here, 'conversations.json'), 'utf8'));
// Templates that read the date take it from date_string when given: fixed here so the renders are stable.
const extra = { date_string: '26 Jul 2024' };
const expected = {};
for (const model of fs.readdirSync(path.join(here, 'models')).sort()) {
  const tokenizer = await AutoTokenizer.from_pretrained(model);
  expected[model] = {};
  for (const conversation of conversations) {
    const renders = {};
    for (const addGenerationPrompt of [false, true]) {
      const key = addGenerationPrompt ? 'with_generation_prompt' : 'without_generation_prompt';
      try {
        renders[key] = tokenizer.apply_chat_template(conversation.messages, {
          tokenize: false,
          add_generation_prompt: addGenerationPrompt,
          tools: conversation.tools ?? null,
          ...extra,
        });
      } catch (e) {
        renders[key] = { error: e.message };
      }
    }
    expected[model][conversation.name] = renders;
  }
}
fs.writeFileSync(path.join(here, 'expected.json'), JSON.stringify(expected, null, 2) + '\n');
