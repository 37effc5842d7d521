// Starts GraphiQL against this server's /graphql. Kept out of the HTML so the page runs under a
// CSP without 'unsafe-inline'. Our API authenticates with a bearer token, so the example puts
// the header in place; GraphiQL keeps edited headers in localStorage (shouldPersistHeaders).
(function () {
  "use strict";
  const EXAMPLE_QUERY = `# Billing API. Put your token in the Headers tab below:
#   {"Authorization": "Bearer bt_..."}
# (\`billing tokens\` lists the demo tokens.) Ctrl-Enter runs the query.
{
  viewer { isAdmin scope }
  invoices(first: 5) {
    nodes { number status total { formatted } syncState { status } }
  }
}
`;
  const EXAMPLE_HEADERS = '{"Authorization": "Bearer "}';
  const fetchURL = window.location.href.split("?")[0].split("#")[0];
  const fetcher = GraphiQL.createFetcher({ url: fetchURL });
  const explorer = GraphiQLPluginExplorer.explorerPlugin();

  function App() {
    return React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultEditorToolsVisibility: true,
      plugins: [explorer],
      defaultQuery: EXAMPLE_QUERY,
      defaultHeaders: EXAMPLE_HEADERS,
      inputValueDeprecation: true,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: true,
    });
  }

  ReactDOM.createRoot(document.getElementById("graphiql")).render(React.createElement(App));
})();
