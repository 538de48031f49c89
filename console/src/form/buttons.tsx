// rjsf's array and property buttons with words instead of icon-font glyphs
// (the default theme expects Bootstrap's glyphicons, which the console does
// not ship): readable, and named for screen readers.
import type { IconButtonProps } from '@rjsf/utils';

function button(label: string) {
  return function TextButton({ onClick, disabled, id, className }: IconButtonProps) {
    return (
      <button type="button" id={id} className={`rjsf-button ${className ?? ''}`} onClick={onClick} disabled={disabled}>
        {label}
      </button>
    );
  };
}

export const buttonTemplates = {
  AddButton: button('Add item'),
  CopyButton: button('Copy'),
  MoveDownButton: button('Move down'),
  MoveUpButton: button('Move up'),
  RemoveButton: button('Remove'),
  ClearButton: button('Clear'),
};
