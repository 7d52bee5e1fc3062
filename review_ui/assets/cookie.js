// gapfill's review session cookie: set after a token sign-in, cleared at sign-out. The value is
// signed on the server (generator/ui_sessions.py); this script only stores or deletes it.
export default function (component) {
  const { data } = component;
  const name = String(data.name);
  const secure = window.location.protocol === "https:" ? "; Secure" : "";
  if (data.clear) {
    document.cookie = `${name}=; Max-Age=0; Path=/; SameSite=Strict${secure}`;
  } else if (data.value) {
    const age = Math.max(0, Math.floor(Number(data.max_age) || 0));
    document.cookie = `${name}=${String(data.value)}; Max-Age=${age}; Path=/; SameSite=Strict${secure}`;
  }
}
