// Sends the authorization response to the application's loopback listener (response_mode
// form_post). Served from our origin, so the page's CSP needs no inline script.
document.getElementById("return").submit();
