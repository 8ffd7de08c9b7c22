// ESLint (flat config): JavaScript's and typescript-eslint's recommended rules, and a line-length limit.
// The packages come through tools/lint (see its index.js for why).
import { globals, js, tseslint } from 'execd-lint';

export default tseslint.config(
  { ignores: ['dist/', 'coverage/', 'native/build/', '**/node_modules/'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      // 140 columns; a URL, a message string or a regexp reads better whole than cut in two.
      'max-len': ['error', {
        code: 140,
        ignoreUrls: true,
        ignoreStrings: true,
        ignoreTemplateLiterals: true,
        ignoreRegExpLiterals: true,
      }],
      // `_`-prefixed names are unused on purpose: a parameter an override must accept, a key destructured away.
      '@typescript-eslint/no-unused-vars': ['error', {
        argsIgnorePattern: '^_',
        varsIgnorePattern: '^_',
        caughtErrorsIgnorePattern: '^_',
        ignoreRestSiblings: true,
      }],
    },
  },
  {
    // Tests walk untyped JSON (the OpenAPI document, problem bodies): `any` there is the honest type.
    files: ['test/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
);
