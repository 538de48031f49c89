// rjsf's layout for a `oneOf`/`anyOf` field, with its selector labelled:
// the default theme renders the <select> that picks the branch without a
// label (axe: select-name). Nesting it in a <label> names it.
import type { MultiSchemaFieldTemplateProps } from '@rjsf/utils';

export function ChoiceTemplate({ selector, optionSchemaField, schema }: MultiSchemaFieldTemplateProps) {
  return (
    <div className="panel panel-default panel-body">
      {selector ? (
        <div className="form-group">
          <label className="choice">
            <span className="control-label">Which kind{schema.title ? ` of ${schema.title}` : ''}</span>
            {selector}
          </label>
        </div>
      ) : null}
      {optionSchemaField}
    </div>
  );
}
