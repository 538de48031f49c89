// Everything the generated forms need, in one module: the build puts it in
// one chunk (form-*.js), shared by "Try a plugin" and "New template" and
// loaded only when one of them opens.
export { default as Form } from '@rjsf/core';
export { validator } from './validator';
export { buttonTemplates } from './buttons';
export { ChoiceTemplate } from './choice';
