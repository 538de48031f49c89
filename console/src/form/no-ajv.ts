// @rjsf/core's test helper (getTestRegistry) imports @rjsf/validator-ajv8,
// which the console does not use: Ajv compiles schemas with `new Function`,
// which the CSP forbids. The build points that import here instead, so Ajv
// can never end up in the bundle.
const unavailable = new Proxy(
  {},
  {
    get() {
      throw new Error('the Ajv validator is not part of the console (see src/form/validator.ts)');
    },
  },
);
export default unavailable;
