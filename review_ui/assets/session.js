// gapfill's review session, kept in the browser's localStorage after a token sign-in. Storage is
// per origin (scheme, host AND port), so another web app on the same host cannot read it, as it
// could a cookie; and nothing sends it along with a request on its own (no ambient credential
// for a forged cross-site request to ride on): this script hands it to the server once per page,
// on the sign-in page. The value is signed by the server (generator/ui_sessions.py).
export default function (component) {
  const { data, setTriggerValue } = component;
  const name = String(data.name);
  try {
    const storage = window.localStorage;
    if (data.clear) {
      storage.removeItem(name);
    } else if (data.value) {
      storage.setItem(name, String(data.value));
    } else if (data.restore && !window.__gapfillSessionOffered) {
      const value = storage.getItem(name);
      if (value) {
        window.__gapfillSessionOffered = true; // once per page: a refused one is not resent
        setTriggerValue("restore", value);
      }
    }
  } catch (error) {
    // Storage blocked (a private window's settings): the reviewer signs in at each reload.
  }
}
