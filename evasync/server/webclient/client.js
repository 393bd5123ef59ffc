// The web client of the evasync demo server: the game's text in, the player's lines out, over
// one WebSocket (see evasync/server/web.py for what goes over it).
//
// The server's text is only ever shown as text (textContent), never parsed as HTML. The state
// of the connection and of the game is kept on <body> as data-link ("connecting", "open",
// "closed"), data-game (the server's word: "ready", "reloading", ...) and data-opens (how many
// times the socket opened), for the style sheet and for the tests.
(() => {
  "use strict";

  const SCROLLBACK = 2000;     // messages kept on screen
  const HISTORY = 100;         // lines kept for the up and down keys
  const FIRST_RETRY = 1000;    // ms before reconnecting after a lost connection, doubling ...
  const LAST_RETRY = 30000;    // ... up to this
  const LOGIN = /^\s*(create|connect)\s+(\S+)\s+(.+?)\s*$/i;
  // Close codes (web.py): the player quit; the server stops; hung up on, refused or broken.
  const QUIT = 1000, STOPPING = 4001, HUNG_UP = [4003, 4008, 1002, 1003, 1007, 1008, 1009];

  const body = document.body;
  const output = document.getElementById("output");
  const form = document.getElementById("prompt");
  const input = document.getElementById("line");
  const notice = document.getElementById("notice");
  const noticeText = document.getElementById("notice-text");
  const reconnectButton = document.getElementById("reconnect");
  const player = document.getElementById("player");
  const link = document.getElementById("link");

  let socket = null;
  let opens = 0;
  let retryWait = FIRST_RETRY;
  let retryTimer = null;
  let countdown = null;
  let gameNotice = "";
  let linkNotice = "";
  let endsLine = true;         // the last text shown ended its line
  const history = [];
  let historyAt = 0;           // history.length: the line being typed
  let draft = "";
  // Kept in this page's memory only, so that a reconnection logs the player back in.
  let login = null;
  let loginTried = null;

  // -- the screen ------------------------------------------------------------------------------

  function show(text, kind) {
    const atBottom = output.scrollHeight - output.scrollTop - output.clientHeight < 48;
    const piece = document.createElement("span");
    if (kind) {
      piece.className = kind;
    }
    piece.textContent = text;
    output.append(piece);
    endsLine = text.endsWith("\n");
    while (output.childElementCount > SCROLLBACK) {
      output.firstElementChild.remove();
    }
    if (atBottom) {
      output.scrollTop = output.scrollHeight;
    }
  }

  function showLine(text, kind) {
    show((endsLine ? "" : "\n") + text + "\n", kind);
  }

  function setLink(state, words) {
    body.dataset.link = state;
    link.textContent = words;
  }

  function updateNotice() {
    const text = linkNotice || gameNotice;
    noticeText.textContent = text;
    notice.hidden = !text;
    notice.classList.toggle("lost", Boolean(linkNotice));
  }

  function setLinkNotice(text, button) {
    linkNotice = text;
    reconnectButton.hidden = !button;
    if (button) {
      reconnectButton.textContent = button;
    }
    updateNotice();
  }

  // -- the connection --------------------------------------------------------------------------

  function connect() {
    clearTimeout(retryTimer);
    clearInterval(countdown);
    retryTimer = countdown = null;
    setLink("connecting", "connecting");
    const url = new URL("ws", window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const opened = new WebSocket(url);
    socket = opened;
    opened.onopen = () => {
      opens += 1;
      body.dataset.opens = String(opens);
      retryWait = FIRST_RETRY;
      setLink("open", "connected");
      setLinkNotice("", null);
      if (opens > 1) {
        showLine("(connected again)", "local");
      }
      if (login) {
        showLine(`> connect ${login.name} ******** (logging you back in)`, "echo");
        loginTried = login;
        opened.send(`connect ${login.name} ${login.password}`);
      }
    };
    opened.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      received(message);
    };
    opened.onclose = (event) => {
      if (socket !== opened) {
        return;
      }
      socket = null;
      closed(event);
    };
  }

  function received(message) {
    if (typeof message.text === "string") {
      show(message.text);
    }
    if (typeof message.game === "string") {
      body.dataset.game = message.game;
      gameNotice = message.notice || "";
      updateNotice();
    }
    if (typeof message.player === "string") {
      player.textContent = message.player;
      if (message.player && loginTried &&
          loginTried.name.toLowerCase() === message.player.toLowerCase()) {
        login = {name: message.player, password: loginTried.password};
      }
      loginTried = null;
    }
  }

  function closed(event) {
    player.textContent = "";
    gameNotice = "";
    const reason = event.reason ? ` (${event.reason})` : "";
    if (event.code === QUIT) {            // the player quit: stay away until asked
      login = null;
      setLink("closed", "disconnected");
      setLinkNotice("You left the game.", "Play again");
    } else if (HUNG_UP.includes(event.code)) {
      setLink("closed", "disconnected");
      setLinkNotice(`The server closed the connection${reason}.`, "Connect again");
    } else {                              // dropped, or the server stopped: try again
      setLink("closed", "connection lost");
      retryLater(event.code === STOPPING ? "The server has stopped." : "Connection lost.");
    }
  }

  function retryLater(why) {
    let left = Math.round(retryWait / 1000);
    const tell = () => {
      setLinkNotice(`${why} Reconnecting in ${left} s ...`, "Reconnect now");
    };
    tell();
    countdown = setInterval(() => {
      left = Math.max(0, left - 1);
      tell();
    }, 1000);
    retryTimer = setTimeout(connect, retryWait);
    retryWait = Math.min(retryWait * 2, LAST_RETRY);
  }

  reconnectButton.addEventListener("click", () => {
    if (socket === null) {
      connect();
    }
    input.focus();
  });

  window.addEventListener("online", () => {
    if (socket === null && retryTimer !== null) {
      connect();
    }
  });

  // -- typing ----------------------------------------------------------------------------------

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value;
    if (socket === null || socket.readyState !== WebSocket.OPEN) {
      setLinkNotice(linkNotice || "Not connected yet: your line is kept; press Enter again " +
                    "once connected.", reconnectButton.hidden ? null : reconnectButton.textContent);
      return;
    }
    socket.send(text);
    const credentials = LOGIN.exec(text);
    if (credentials) {
      loginTried = {name: credentials[2], password: credentials[3]};
      showLine(`> ${credentials[1]} ${credentials[2]} ********`, "echo");
    } else {
      showLine(`> ${text}`, "echo");
      if (text.trim() && history[history.length - 1] !== text) {
        history.push(text);
        if (history.length > HISTORY) {
          history.shift();
        }
      }
    }
    historyAt = history.length;
    draft = "";
    input.value = "";
    output.scrollTop = output.scrollHeight;
  });

  input.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowUp" && event.key !== "ArrowDown") {
      return;
    }
    event.preventDefault();
    if (historyAt === history.length) {
      draft = input.value;
    }
    historyAt += event.key === "ArrowUp" ? -1 : 1;
    historyAt = Math.max(0, Math.min(history.length, historyAt));
    input.value = historyAt === history.length ? draft : history[historyAt];
    input.setSelectionRange(input.value.length, input.value.length);
  });

  connect();
  input.focus();
})();
