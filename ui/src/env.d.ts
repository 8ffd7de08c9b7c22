// esbuild bundles the stylesheets the entry imports into app.css.
declare module '*.css';
