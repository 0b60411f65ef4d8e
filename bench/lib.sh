# Shared by the bench scripts (sourced).

# mosquitto is the peer every comparison runs against: install it from Debian if missing.
ensure_mosquitto() {
  local missing=()
  command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
  command -v mosquitto_pub >/dev/null || missing+=(mosquitto-clients)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} (apt)" >&2
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  export PATH="$PATH:/usr/sbin"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
