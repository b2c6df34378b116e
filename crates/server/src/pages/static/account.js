// The account page's copy button for a new API token. Without JavaScript the
// button stays hidden and the token can be selected in its field.
(function () {
  'use strict';
  var button = document.getElementById('copy-token');
  var field = document.getElementById('new-token');
  var status = document.getElementById('copy-status');
  if (!button || !field || !status || !navigator.clipboard) {
    return;
  }
  button.hidden = false;
  button.addEventListener('click', function () {
    navigator.clipboard.writeText(field.value).then(
      function () {
        status.textContent = 'Copied to the clipboard.';
      },
      function () {
        field.focus();
        field.select();
        status.textContent = 'Copying was not allowed: the token is selected, copy it with your keyboard.';
      }
    );
  });
})();
