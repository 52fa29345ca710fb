/* Loaded just before RequireJS and the vendored ipywidgets HTML manager, on pages
 * that embed saved widget state (see nb_ipywidgets_js in _config.yml). */
(function () {
  "use strict";

  // The manager's CSS loads its Font Awesome fonts from a webpack public path that
  // it derives from the URLs of its AMD modules, which RequireJS resolves relative
  // to the page. Map the module names into the vendored folder (a global `require`
  // defined before require.js loads is its configuration), so the fonts are found
  // next to embed-amd.js.
  var here = document.currentScript && document.currentScript.src;
  if (here) {
    var assets = new URL("vendor/html-manager/", here).href;
    window.__jupyter_widgets_assets_path__ = assets;
    if (window.require === undefined) {
      var paths = {};
      [
        "base",
        "base7",
        "controls",
        "controls7",
        "html-manager",
        "html-manager/dist/libembed-amd",
      ].forEach(function (name) {
        paths["@jupyter-widgets/" + name] = assets + name.split("/").pop();
      });
      window.require = { paths: paths };
    }
  }

  // The manager typesets widget labels with MathJax 2's API, MathJax.Hub.Queue,
  // whenever window.MathJax exists; the book loads MathJax 3. Bridge that call.
  var config = window.MathJax;
  if (config === undefined || config.Hub) {
    return;
  }
  var pending = [];
  function typeset(elements) {
    var mathjax = window.MathJax;
    mathjax.startup.promise
      .then(function () {
        return mathjax.typesetPromise(elements);
      })
      .catch(function (err) {
        console.warn("MathJax could not typeset a widget:", err);
      });
  }
  function queue(job) {
    // job is ["Typeset", MathJax.Hub, element]
    var element = job && job[2];
    var mathjax = window.MathJax;
    if (mathjax.startup && mathjax.startup.promise) {
      typeset(element ? [element] : undefined);
    } else if (element) {
      pending.push(element); // MathJax 3 has not started yet
    }
  }
  config.Hub = { Queue: queue };
  config.startup = config.startup || {};
  var ready = config.startup.ready;
  config.startup.ready = function () {
    if (ready) {
      ready();
    } else {
      window.MathJax.startup.defaultReady();
    }
    window.MathJax.Hub = { Queue: queue };
    if (pending.length) {
      typeset(pending.splice(0));
    }
  };
})();
