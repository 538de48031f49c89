// rjsf's validator over @cfworker/json-schema. rjsf's own validator (Ajv)
// compiles schemas into code with `new Function`, which the console's CSP
// forbids (no eval); @cfworker/json-schema interprets schemas instead. This
// adapter only translates between the two libraries' shapes; the server
// checks every event against the version's input_schema again anyway.
import { Validator, type OutputUnit, type Schema } from '@cfworker/json-schema';
import {
  ROOT_SCHEMA_PREFIX,
  createErrorHandler,
  toErrorSchema,
  unwrapErrorHandler,
  validationDataMerge,
  withIdRefPrefix,
  type CustomValidator,
  type ErrorTransformer,
  type RJSFSchema,
  type RJSFValidationError,
  type UiSchema,
  type ValidationData,
  type ValidatorType,
} from '@rjsf/utils';

// Keywords that only say "something below failed": their children carry the real error.
const WRAPPERS = new Set(['properties', 'items', 'prefixItems', 'additionalProperties', 'allOf', '$ref', 'dependentSchemas', 'unevaluatedProperties']);

function run(schema: RJSFSchema, data: unknown, root?: RJSFSchema): OutputUnit[] {
  const v = new Validator(schema as Schema, '2020-12', false);
  if (root) v.addSchema(root as Schema, ROOT_SCHEMA_PREFIX);
  return v.validate(data).errors;
}

function toRjsf(units: OutputUnit[]): RJSFValidationError[] {
  const leaves = units.filter((u) => !WRAPPERS.has(u.keyword) && u.keyword !== 'false');
  const picked = leaves.length > 0 ? leaves : units;
  return picked.map((u) => {
    // "#/a/0/b" → ".a.0.b"; a missing required property belongs to the property.
    let property = u.instanceLocation.replace(/^#/, '').replace(/\//g, '.');
    let message = u.error;
    if (u.keyword === 'required') {
      const m = /"([^"]+)"/.exec(u.error);
      if (m) {
        property = `${property}.${m[1]}`;
        message = 'is a required property';
      }
    }
    return {
      name: u.keyword,
      property,
      message,
      params: {},
      stack: `${property.replace(/^\./, '') || 'the event'}: ${message}`,
      schemaPath: u.keywordLocation,
    };
  });
}

class CfWorkerValidator implements ValidatorType {
  rawValidation<Result = OutputUnit>(schema: RJSFSchema, formData?: unknown): { errors?: Result[]; validationError?: Error } {
    try {
      const errors = run(schema, formData);
      return { errors: errors.length ? (errors as Result[]) : undefined };
    } catch (e) {
      return { validationError: e instanceof Error ? e : new Error(String(e)) };
    }
  }

  validateFormData(
    formData: unknown,
    schema: RJSFSchema,
    customValidate?: CustomValidator,
    transformErrors?: ErrorTransformer,
    uiSchema?: UiSchema,
  ): ValidationData<unknown> {
    const raw = this.rawValidation<OutputUnit>(schema, formData);
    let errors = raw.validationError
      ? [{ name: 'schema', property: '.', message: `The schema cannot be used: ${raw.validationError.message}`, stack: raw.validationError.message, params: {} }]
      : toRjsf(raw.errors ?? []);
    if (transformErrors) errors = transformErrors(errors, uiSchema);
    let result: ValidationData<unknown> = { errors, errorSchema: toErrorSchema(errors) };
    if (customValidate) {
      const handler = customValidate(formData, createErrorHandler(formData), uiSchema);
      result = validationDataMerge(result, unwrapErrorHandler(handler));
    }
    return result;
  }

  isValid(schema: RJSFSchema, formData: unknown, rootSchema: RJSFSchema): boolean {
    try {
      return run(withIdRefPrefix(schema) as RJSFSchema, formData, rootSchema).length === 0;
    } catch {
      return false;
    }
  }
}

export const validator = new CfWorkerValidator();
