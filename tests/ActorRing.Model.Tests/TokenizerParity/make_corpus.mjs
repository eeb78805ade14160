// Writes corpus.json: the strings the tokenizer parity tests encode. Run once with `node make_corpus.mjs`;
// the output is committed. Strings holding a lone (invalid) surrogate cannot round-trip through strict JSON
// readers, so every entry is stored as its UTF-16 code units ("u") next to a readable copy ("text", lossy).
import { writeFileSync } from 'node:fs';

const s = [];
const add = (...xs) => s.push(...xs);

// The empty string and whitespace runs.
add('', ' ', '  ', '   ', '    ', '        ', '\t', '\t\t', '\n', '\n\n', '\n\n\n', '\r\n', '\r\n\r\n', ' \n', '\n ',
    'a  b', 'a   b', 'a    b', 'a\tb', 'a\t\tb', 'a\nb', 'a\n\nb', 'a \n b', 'trailing ', 'trailing  ', ' leading',
    '  leading two', '\tindented', '    four-space indent', 'line1\nline2\nline3', 'mixed \t \n whitespace', ' \t\n\r ');
// Digits and numbers.
add('0', '1', '12', '123', '1234', '12345', '123456789', '3.14159', '1,000,000', '-42', '+7', '1e10', '0x1F', '2026-12-02',
    '12:30:45', '$19.99', '100%', 'v1.2.3', 'a1b2c3', '١٢٣', '٣.١٤', '७८९', '½ ¾', 'Ⅻ', '10⁶', 'room 101', ' 2024');
// Contractions and English text.
add("don't", "I'm", "you're", "we've", "she'll", "he'd", "it's", "DON'T", "I'M", "YOU'RE", "'s", "'tis", "rock 'n' roll",
    "can't won't shouldn't", "O'Neil's", 'Hello', 'hello world', 'Hello, World!', 'The quick brown fox jumps over the lazy dog.',
    'Once upon a time, there was a little girl named Lily.', 'HELLO WORLD', 'hElLo', 'e.g. i.e. etc.', 'Mr. Smith & Co.',
    'A sentence. Another one? Yes! No...', '"quoted" and \'single\'', '(parens) [brackets] {braces} <angles>',
    'a-b_c.d/e\\f', '#hashtag @mention', '...', '!!!', '???', '---', '***', '~~~', '___');
// Non-English scripts and CJK.
add('你好', '你好，世界！', '我爱自然语言处理。', '日本語のテキスト', 'ひらがな カタカナ', '한국어 텍스트', '中文 English 混合',
    'Привет, мир!', 'Ελληνικά', 'مرحبا بالعالم', 'שלום עולם', 'नमस्ते दुनिया', 'สวัสดีชาวโลก', 'Tiếng Việt có dấu',
    'Zürich Straße Öl', 'naïve café résumé', 'ﬁ ligature', 'Ａｂｃ full-width', '𠀀𠀁 CJK extension B', '𝐀𝐁𝐂 math bold',
    '𝟏𝟐𝟑 math digits', 'ǅungla title case', '中', '中文', 'の', '、。');
// Emoji, ZWJ sequences, flags, skin tones, variation selectors.
add('🙂', '😀😃😄', '👍🏽', '👨‍👩‍👧‍👦', '🏳️‍🌈', '🇫🇷🇯🇵', '❤️', '✌🏿', '🧑‍💻 coding', 'I ❤️ NY', 'emoji🙂inside', ' 🙂',
    '🙂 ', '1️⃣', '🫠🫡', '👩🏽‍🚀', 'a🙂b🙂c', '🙂🙂🙂🙂');
// Combining marks, NBSP and other spaces, control characters.
add('e\u0301', 'cafe\u0301', 'n\u0303', 'a\u0300\u0301\u0302', 'Z\u0351\u0352\u0353', '\u0301', ' \u0301',
    'Å vs A\u030A', 'ﾊﾟ', '가\u11A8', 'a\u00A0b', '\u00A0', '\u00A0\u00A0', 'x\u2009y', 'x\u3000y', '\u3000', 'x\u202Fy',
    'x\u200By', 'x\u200Dy', 'x\u2028y', 'x\u2029y', 'x\u0085y', 'a\u0000b', '\u0000', '\u0001\u0002\u0003', 'a\u0007b',
    '\u001B[31mred\u001B[0m', 'a\u000Bb', 'a\u000Cb', '\u007F', 'x\u00ADy', 'Ω vs \u2126', 'ﬀ', '\u200E\u200F');
// Lone (invalid) surrogates: JavaScript strings may hold them; encoders replace them with U+FFFD.
add('\uD800', 'a\uD800b', '\uDC00', 'x\uDFFFy', '\uD83D', 'a\uD83Db', '\uDE42\uD83D');
// Code.
add('def f(x):\n    return x + 1\n', 'for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}', 'if x == 1:\n\tpass',
    'console.log("hi");', 'SELECT * FROM users WHERE id = 42;', '<div class="a">text</div>', '{"key": [1, 2, 3]}',
    'x += 1; y -= 2; z *= 3', 'a && b || !c', 'fn main() { println!("{}", 1); }', '#include <stdio.h>', '// comment',
    '/* block */', '#!/bin/bash\necho $HOME', 'λx. x', 'let s = `t ${v}`;', 'public static void Main(string[] args)',
    '    indented code\n        more', 'a=b==c!=d<=e>=f', '\t\tdeep\ttabs', 'arr[0][1]->next', '@decorator\ndef g(): ...',
    'import numpy as np', 'x**2 + y**2', '    \n    \n', '```python\nprint(1)\n```');
// URLs, paths, e-mail.
add('https://example.com', 'https://example.com/path?q=1&r=two#frag', 'http://localhost:8080/api/v1',
    'www.example.org', 'mailto:user@example.com', 'user.name+tag@example.co.uk', 'ftp://files.example.net/a b.txt',
    '/usr/local/bin/python3', 'C:\\Windows\\System32', '../relative/path.txt', 'https://例子.测试/路径');
// Special tokens written in the text, of every family (each is a special token in some tokenizer, plain text in others).
add('<s>', '</s>', '<unk>', '<s>Hello</s>', 'Hello</s>', ' <s> hi', '<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>',
    '<|begin_of_text|>Hello', 'Hi<|eot_id|>', '<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>',
    '<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n', '<|im_end|>', '<|endoftext|>', 'a<|endoftext|>b',
    '<think>\nreasoning\n</think>\n\nanswer', '<tool_call>{"name": "f"}</tool_call>', '<bos>', '<eos>', '<start_of_turn>user\nHi<end_of_turn>\n',
    '<end_of_turn>', '<pad>', '<mask>', '<unused0>', '<｜begin▁of▁sentence｜>', '<｜User｜>Hi<｜Assistant｜>', '<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>',
    '<|eot_id', 'eot_id|>', '<|im_start', '< s >', '<<s>>', '<s><s>', ' </s> ');
// Miscellany: repeated characters, long words, mixed.
add('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'ababababababababab', 'supercalifragilisticexpialidocious',
    'Pneumonoultramicroscopicsilicovolcanoconiosis', 'antidisestablishmentarianism', '==========', '----------',
    '..........', '          ten spaces', 'UPPER lower Title', 'camelCaseWord', 'snake_case_word', 'kebab-case-word',
    'Mixed 中文 and English and 日本語 and 🙂', '"Hello," she said. "How are you?"', '¿Qué tal? ¡Bien!', '«guillemets»',
    '“curly quotes” ‘single’', '— em dash – en dash', '© ® ™ ° ± × ÷', '∀x∈ℝ: x² ≥ 0', '→ ← ↑ ↓', '♠♣♥♦', '▁underscore-like ▁', '▁',
    'A\u2581B', 'tab\tand\nnewline\r\nand\rcr', 'end with newline\n', '\n\nstarts with newlines', 'The year 1999 and 2000.',
    'Price: €100, £50, ¥1000', 'Temperature: -5°C', 'x = 1_000_000', '1.5e-3', 'Call 555-1234 now!',
    'Line one.\n\nLine two.\n\n\nLine three.', 'What\'s up?\tNothing much.', "It's 5 o'clock.", 'a b c d e f g',
    'Hello World Hello World Hello World', 'ok', 'OK', 'Ok.', 'no', '!', '?', '.', ',', "'", '"', '\\', '/', ' a', 'a ');

const entries = s.map((t) => ({ text: t, u: Array.from({ length: t.length }, (_, i) => t.charCodeAt(i)) }));
writeFileSync(new URL('./corpus.json', import.meta.url), JSON.stringify(entries.map((e) => e.u)) + '\n');
console.log(`${entries.length} strings`);
